"""Helpers shared by the tests: synthetic data, made-up histories, broken folders.

Nothing here needs real CIFAR-10 or the network. Test modules import what they use::

    from tests.fixtures import BAD_FOLDERS, fresh_folder, make_image_folder

The pytest fixtures built on these (``tiny_folder``, ``tiny_data``, ...) are in
``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

CIFAR_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
"""CIFAR-10's class names in label order (kept here so fixtures need no TensorFlow)."""

BENCH = Path(__file__).resolve().parent.parent / "bench"


@contextlib.contextmanager
def bench_script(name: str) -> Iterator[ModuleType]:
    """``bench/<name>.py`` as a module, loaded as it runs: with ``bench/`` first on ``sys.path``.

    On leaving, the module and the bench modules it imported are forgotten.
    """
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for loaded in [key for key, value in sys.modules.items()
                       if getattr(value, "__file__", None)
                       and Path(value.__file__).parent == BENCH]:
            sys.modules.pop(loaded, None)
        sys.path.remove(str(BENCH))


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


def synthetic_data(n: int, val: int = 0):
    """A :class:`~cifar_tutorial.data.CifarData` of ``n`` noisy images in memory, no files.

    Class ``c`` is brighter by ``12 c``; the first ``val`` images are also the
    validation split (none by default), the first 10 the test split.
    """
    from cifar_tutorial.data import CifarData  # only here: this module needs no TensorFlow

    rng = np.random.default_rng(0)
    y = (np.arange(n) % 10).astype(np.int32)
    x = np.clip(rng.normal(100 + 12 * y[:, None, None, None], 40, (n, 32, 32, 3)), 0, 255)
    x = x.astype(np.uint8)
    return CifarData(x[val:], y[val:], x[:val], y[:val], x[:10], y[:10], CIFAR_CLASSES,
                     "synthetic")


def square_images(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dark noisy images with a bright 8x8 square in one of four corners; the corner is the class."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(n, size, size, 3)).astype(np.uint8)
    labels = rng.integers(0, 4, size=n)
    for image, label in zip(images, labels):
        r, c = divmod(int(label), 2)
        image[4 + 16 * r: 12 + 16 * r, 4 + 16 * c: 12 + 16 * c] = 230
    return images, labels


def fresh_folder(tmp_path: Path) -> Path:
    """A small JPEG image folder (2 training and 1 test image per class) to break in a test."""
    return make_image_folder(tmp_path / "cifar", per_class_train=2, per_class_test=1)


def closed_port() -> int:
    """A local TCP port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history_records(
    train_acc: Sequence[float], val_acc: Sequence[float], val_loss: Sequence[float],
    seconds: float = 1.0,
) -> list[dict[str, float]]:
    """Per-epoch records, as :class:`cifar_tutorial.records.History` holds them, of a made-up run."""
    return [
        {"epoch": i + 1, "loss": 1.0, "accuracy": a, "val_loss": vl, "val_accuracy": va,
         "lr": 1e-3, "seconds": seconds}
        for i, (a, va, vl) in enumerate(zip(train_acc, val_acc, val_loss))
    ]


# --------------------------------------------------------------------------- broken folders


def _rename_class(root: Path, old: str, new: str) -> Path:
    for split in ("train", "test"):
        (root / split / old).rename(root / split / new)
    return root


def _truncate(path: Path) -> None:
    """Keep the JPEG header (Pillow's header check passes) but cut the scan data."""
    raw = path.read_bytes()
    sos = raw.index(b"\xff\xda")  # start of scan: everything after it is pixels
    path.write_bytes(raw[: sos + 20])


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _save(path: Path, size: tuple[int, int], mode: str) -> None:
    from PIL import Image

    Image.new(mode, size).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def _empty(root: Path, hidden: bool = False) -> Path:
    folder = root.parent / "empty"
    folder.mkdir()
    if hidden:
        _write(folder / ".DS_Store", b"\0\0\0\1Bud1")
    return folder


def _no_classes(root: Path) -> Path:
    for folder in (root / "test").iterdir():
        shutil.rmtree(folder)
    return root


def _empty_class(root: Path) -> Path:
    for path in (root / "test" / "dog").iterdir():
        path.unlink()
    return root


def _then(action: Callable[[Path], object]) -> Callable[[Path], Path]:
    """Run ``action(root)`` and hand back ``root`` as the data folder."""

    def run(root: Path) -> Path:
        action(root)
        return root

    return run


BAD_FOLDERS: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "missing": (lambda r: r / "nowhere", ["does not exist", "CIFAR10_DIR"]),
    "a file": (lambda r: _write(r / "a.txt", b"x"), ["is a file", "CIFAR10_DIR"]),
    "empty": (_empty, ["is empty", "CIFAR10_DIR"]),
    "only hidden files": (lambda r: _empty(r, hidden=True), ["is empty"]),
    "no train": (_then(lambda r: shutil.rmtree(r / "train")), ["no 'train' folder", "train/<class>"]),
    "no test": (_then(lambda r: shutil.rmtree(r / "test")), ["no 'test' folder", "test/<class>"]),
    "no classes": (_no_classes, ["holds no class folders"]),
    "classes differ between splits": (
        _then(lambda r: shutil.rmtree(r / "test" / "cat")),
        ["differ between train and test", "['cat']"]),
    "not CIFAR-10's classes": (
        lambda r: _rename_class(r, "cat", "kitten"), ["kitten", "CIFAR-10 has", "Rename"]),
    "empty class folder": (_empty_class, ["dog", "holds no images"]),
    "not an image": (
        _then(lambda r: _write(r / "train" / "cat" / "notes.txt", b"hi")),
        ["notes.txt", "is not an image", "remove it"]),
    "folder in class folder": (
        _then(lambda r: (r / "train" / "cat" / "more").mkdir()), ["more", "remove it"]),
    "random bytes named .jpg": (
        _then(lambda r: _write(first_image(r), np.random.default_rng(0).bytes(700))),
        ["train/cat/0000.jpg", "cannot be", "replace it"]),
    "empty .jpg": (
        _then(lambda r: _write(first_image(r, "test", "ship"), b"")), ["ship/0000.jpg", "cannot"]),
    "truncated JPEG": (
        _then(lambda r: _truncate(first_image(r, "train", "frog"))),
        ["train/frog/0000.jpg", "cannot be decoded", "replace it"]),
    "64x64 image": (
        _then(lambda r: _save(first_image(r, "test", "deer"), (64, 64), "RGB")),
        ["test/deer/0000.jpg", "64x64", "32x32 RGB"]),
    "grayscale image": (
        _then(lambda r: _save(first_image(r), (32, 32), "L")),
        ["train/cat/0000.jpg", " L;", "32x32 RGB"]),
    "RGBA png": (
        _then(lambda r: _save(r / "train" / "cat" / "extra.png", (32, 32), "RGBA")),
        ["extra.png", "RGBA"]),
}
"""Ways to break a :func:`fresh_folder`: case -> (the breaking function, which returns
the data folder to load; fragments the error message must hold)."""
