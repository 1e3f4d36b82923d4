"""Tiny synthetic CIFAR-10 image folders for the tests (no real data needed).

Import from a test module with::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fixtures import make_image_folder
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CIFAR_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
"""CIFAR-10's class names in label order (kept here so fixtures need no TensorFlow)."""


def make_image_folder(
    root: str | os.PathLike,
    per_class_train: int = 6,
    per_class_test: int = 2,
    fmt: str = "jpg",
    seed: int = 0,
    classes: Sequence[str] = CIFAR_CLASSES,
    size: tuple[int, int] = (32, 32),
    mode: str = "RGB",
) -> Path:
    """Write a small image folder ``root/{train,test}/<class>/<i>.<fmt>`` with Pillow.

    Each class gets its own mean colour plus noise, so that a net can learn
    something in a few steps; the same seed always writes the same bytes.

    Parameters
    ----------
    root : path
        Folder to create (parents too); it may exist.
    per_class_train, per_class_test : int
        Images per class in ``train`` and ``test``.
    fmt : {"jpg", "jpeg", "png"}
        File format and suffix.
    seed : int
        Seed of the pixels.
    classes : sequence of str
        Class folder names (CIFAR-10's ten by default).
    size : (int, int)
        Width and height of every image.
    mode : str
        Pillow mode, e.g. ``"RGB"`` or ``"L"``.

    Returns
    -------
    Path
        ``root``.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else len(mode)
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = (np.arange(channels) * 53 + c * 23) % 256
            for i in range(count):
                noise = rng.integers(-40, 41, size=(size[1], size[0], channels))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
                image.save(folder / f"{i:04d}.{fmt}")
    return root


def first_image(root: str | os.PathLike, split: str = "train", cls: str = "cat") -> Path:
    """Return the first image file of one class folder (to corrupt it in a test).

    Parameters
    ----------
    root : path
        A folder written by :func:`make_image_folder`.
    split, cls : str
        Which split and class.

    Returns
    -------
    Path
        The file.
    """
    return sorted(p for p in (Path(root) / split / cls).iterdir() if not p.name.startswith("."))[0]
