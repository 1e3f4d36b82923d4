"""pytest configuration shared by the unit tests and ``pytest --nbval``.

The notebooks under ``chapters/`` run in smoke mode (small data, few steps): the
kernel that nbval starts inherits this process's environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CIFAR_TUTORIAL_SMOKE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

collect_ignore_glob = ["_build/*", "runs/*", "bench/*", ".venv/*"]


def real_data_dir() -> Path | None:
    """The real CIFAR-10 image folder named by ``$CIFAR10_DIR``, if it exists."""
    value = os.environ.get("CIFAR10_DIR")
    if value and (Path(value) / "train").is_dir():
        return Path(value)
    return None


def _notebook_data_available() -> tuple[bool, str]:
    if real_data_dir() is not None:
        return True, ""
    from cifar_tutorial.sources import network_reachable

    try:
        import tensorflow_datasets as tfds

        if tfds.builder("cifar10").is_prepared():
            return True, ""
    except Exception:  # noqa: BLE001 - treat any failure as not prepared
        pass
    if network_reachable(timeout=3.0):
        return True, ""
    return False, (
        "no CIFAR-10 for the notebooks: set CIFAR10_DIR to the image folder, "
        "or prepare TFDS cifar10 (needs the network once)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip notebook cells when no real CIFAR-10 can be had on this machine."""
    notebook_items = [i for i in items if str(i.fspath).endswith(".ipynb")]
    if not notebook_items:
        return
    ok, reason = _notebook_data_available()
    if not ok:
        for item in notebook_items:
            item.add_marker(pytest.mark.skip(reason=reason))
