"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures import make_image_folder


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder with 12 training and 4 test images per class (PNG, lossless)."""
    return make_image_folder(tmp_path_factory.mktemp("tiny") / "cifar", 12, 4, fmt="png")


@pytest.fixture(scope="session")
def tiny_data(tiny_folder: Path):
    """``CifarData`` read from :func:`tiny_folder` with a 25% validation split."""
    from cifar_tutorial.data import load_cifar10

    return load_cifar10("folder", tiny_folder, val_fraction=0.25, seed=0)


@pytest.fixture(scope="session")
def real_folder() -> Path:
    """The real CIFAR-10 image folder from ``$CIFAR10_DIR``; skips when absent."""
    value = os.environ.get("CIFAR10_DIR")
    if not value or not (Path(value) / "train").is_dir():
        pytest.skip("real CIFAR-10 not available: set CIFAR10_DIR to the image folder")
    return Path(value)
