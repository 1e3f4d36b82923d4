"""CIFAR-10 as arrays and as ``tf.data`` pipelines (chapter 5, "The data pipeline").

Two sources give the same :class:`CifarData`:

``"folder"``
    An image folder ``root/{train,test}/<class>/*.{jpg,jpeg,png}`` read in
    ``tfds.ImageFolder``'s order, given by argument or by the environment variable
    ``CIFAR10_DIR``. Works offline.
``"tfds"``
    The TensorFlow Datasets ``cifar10`` data set, prepared already or downloaded
    once (about 160 MB).

``source="auto"`` tries them in this order: a folder given by argument or
``CIFAR10_DIR``, a prepared ``cifar10`` in the TFDS data folder, then a download when
TFDS's servers answer within a few seconds. Anything else fails at once with a
:class:`~cifar_tutorial.sources.DataError` that says how to get the data. The readers
of both sources live in :mod:`cifar_tutorial.sources`; their names (``CLASS_NAMES``,
``DataError``, ``read_image_folder``, ...) can also be reached from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf

from cifar_tutorial.runtime import run_mode
from cifar_tutorial.sources import (
    CLASS_NAMES,  # noqa: F401 - the chapters read it as data.CLASS_NAMES
    ENV_DIR,
    HOW_TO_GET_DATA,
    IMAGE_SHAPE,
    DataError,
    read_image_folder,
    read_tfds,
)

__all__ = [
    "Source",
    "LabelMode",
    "CifarData",
    "flip_and_translate",
    "load_cifar10",
    "describe_folder",
    "is_original_release",
    "ORIGINAL_TRAIN_MEAN",
    "read_image_folder_cached",
    "split_validation",
    "class_counts",
    "to_unit_float",
]

Source = Literal["auto", "folder", "tfds"]
LabelMode = Literal["sparse", "onehot"]


@dataclasses.dataclass(frozen=True, eq=False)
class CifarData:
    """CIFAR-10 in memory: uint8 images, integer labels, class names, source.

    Images stay ``uint8`` (150 MB for all 60,000) and are scaled to ``[0, 1]`` batch
    by batch inside the pipelines that :meth:`dataset` builds.

    Attributes
    ----------
    x_train, y_train, x_val, y_val, x_test, y_test : numpy.ndarray
        Images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` int32. The validation
        split is carved out of CIFAR-10's training set; it may be empty.
    class_names : tuple of str
        Names in label order.
    source : str
        Which source was used, in words.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(images, labels)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def sizes(self) -> dict[str, int]:
        """Number of examples in each split."""
        return {s: len(self.arrays(s)[1]) for s in ("train", "val", "test")}

    def summary(self) -> str:
        """Two short lines: where the images come from, and the split sizes."""
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.sizes().items())
        return f"CIFAR-10 from {self.source}:\n{sizes}"

    def subset(
        self, train: int | None = None, val: int | None = None, test: int | None = None
    ) -> CifarData:
        """Keep the first ``n`` examples of each split (for the smoke mode and demos).

        Parameters
        ----------
        train, val, test : int, optional
            How many to keep; ``None`` keeps the whole split.

        Returns
        -------
        CifarData
            A smaller copy.
        """
        def cut(a: np.ndarray, n: int | None) -> np.ndarray:
            return a if n is None else a[:n]

        return dataclasses.replace(
            self,
            x_train=cut(self.x_train, train),
            y_train=cut(self.y_train, train),
            x_val=cut(self.x_val, val),
            y_val=cut(self.y_val, val),
            x_test=cut(self.x_test, test),
            y_test=cut(self.y_test, test),
        )

    def for_run_mode(
        self,
        smoke: tuple[int, int, int] = (1024, 256, 512),
        quick: tuple[int, int, int] = (5000, 1000, 2000),
    ) -> CifarData:
        """Return the data a chapter trains on in the current run mode.

        Notebooks call this right after loading: a full run keeps everything, a
        reader's quick run (``CIFAR_TUTORIAL_QUICK=1``) and the tests' smoke run keep
        the first images of each split, so that they finish in minutes.

        Parameters
        ----------
        smoke, quick : tuple of int
            ``(train, val, test)`` sizes kept in the smoke and the quick mode.

        Returns
        -------
        CifarData
            ``self`` in a full run, a subset otherwise.
        """
        mode = run_mode()
        if mode == "full":
            return self
        return self.subset(*(smoke if mode == "smoke" else quick))

    def dataset(
        self,
        split: str,
        batch_size: int = 32,
        *,
        label_mode: LabelMode = "sparse",
        shuffle: bool | None = None,
        seed: int = 0,
        augment: Callable | None = None,
        drop_remainder: bool = False,
        epoch: int | range | None = None,
    ):
        """Build a batched, scaled, prefetched ``tf.data.Dataset`` of one split.

        Every pass over the returned dataset (every epoch of ``model.fit``) draws a
        new order and, with ``augment``, new random transforms; a seed always gives
        the same sequence of passes. Pass ``epoch`` to get one fixed pass instead:
        its order and transforms are a function of ``seed`` and ``epoch`` alone,
        which is how :func:`cifar_tutorial.train.train` makes a resumed run see the
        batches an uninterrupted run sees (chapters 5 and 7).

        Parameters
        ----------
        split : {"train", "val", "test"}
            Which split.
        batch_size : int
            Examples per batch.
        label_mode : {"sparse", "onehot"}
            Integer labels (for sparse cross-entropy) or one-hot rows (for
            categorical cross-entropy).
        shuffle : bool, optional
            Shuffle before batching; by default only the training split is shuffled.
        seed : int
            Seed of the orders and of the augmentation.
        augment : callable, optional
            A function ``(image, seed) -> image`` applied to each scaled image
            before batching, e.g. :func:`flip_and_translate`; ``seed`` is a
            ``[2]`` int64 tensor drawn from ``seed``, the pass and the example's
            position in it.
        drop_remainder : bool
            Drop the last, smaller batch.
        epoch : int or range, optional
            The pass to give, numbered from 0, or a range of passes given one after
            the other (``range(3, 10)``: epochs 4 to 10 of a run, as ``fit`` with
            ``initial_epoch=3, epochs=10, steps_per_epoch=...`` consumes them).

        Returns
        -------
        tf.data.Dataset
            Batches of ``(float32 images in [0, 1], labels)``; its length is the
            number of batches.
        """
        x, y = self.arrays(split)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(y) == 0:
            raise DataError(f"the {split!r} split is empty")
        if label_mode not in ("sparse", "onehot"):
            raise ValueError(f"label_mode must be 'sparse' or 'onehot', got {label_mode!r}")
        if shuffle is None:
            shuffle = split == "train"
        num_classes, count = self.num_classes, len(y)
        images, labels = tf.constant(x), tf.constant(y)

        def finish(batch_images, batch_labels):
            if label_mode == "onehot":
                batch_labels = tf.one_hot(batch_labels, num_classes)
            return batch_images, batch_labels

        def one_pass(key):
            """The pass drawn from ``(seed, key)``: an order, then the transforms."""
            pass_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(key, tf.int64)])
            order = tf.range(count, dtype=tf.int64)
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(order, seed=pass_seed)
            ds = tf.data.Dataset.from_tensor_slices(order)
            if augment is None:  # gather whole batches: faster than one image at a time
                ds = ds.batch(batch_size, drop_remainder=drop_remainder)
                return ds.map(lambda i: finish(tf.cast(tf.gather(images, i), tf.float32) / 255.0,
                                               tf.gather(labels, i)),
                              num_parallel_calls=tf.data.AUTOTUNE)

            def augment_one(position, index):
                image = tf.cast(tf.gather(images, index), tf.float32) / 255.0
                one_seed = tf.random.experimental.stateless_fold_in(pass_seed, position)
                return augment(image, one_seed), tf.gather(labels, index)

            ds = ds.enumerate().map(augment_one, num_parallel_calls=tf.data.AUTOTUNE)
            return ds.batch(batch_size, drop_remainder=drop_remainder).map(finish)

        passes = 1 if not isinstance(epoch, range) else len(epoch)
        if epoch is not None:
            first = epoch.start if isinstance(epoch, range) else epoch
            ds = tf.data.Dataset.range(first, first + passes).flat_map(one_pass)
        elif shuffle or augment is not None:  # a new key, so a new pass, each iteration
            keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            ds = keys.take(1).flat_map(one_pass)
        else:
            ds = one_pass(0)
        batches = count // batch_size if drop_remainder else -(-count // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches * passes))
        return ds.prefetch(tf.data.AUTOTUNE)


def flip_and_translate(pad: int = 4) -> Callable:
    """Make the augmentation of chapter 9: random horizontal flip and shift.

    The shift pads the image by reflection and crops a random 32x32 window, so the
    content moves by up to ``pad`` pixels each way. The random numbers are
    stateless: they come from the seed pair that :meth:`CifarData.dataset` passes,
    drawn from its seed, the pass over the data and the example's position, so a
    seed gives the same batches every time and new transforms in every epoch.

    Parameters
    ----------
    pad : int
        Largest shift in pixels.

    Returns
    -------
    callable
        ``(image, seed) -> image`` on one float image and a ``[2]`` int64 seed.
    """
    def augment(image, seed):
        image = tf.image.stateless_random_flip_left_right(image, seed=seed)
        if pad > 0:
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.stateless_random_crop(padded, IMAGE_SHAPE, seed=seed + 1)
        return image

    return augment


# --------------------------------------------------------------------------- loading


def load_cifar10(
    source: Source = "auto",
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    tfds_data_dir: str | os.PathLike | None = None,
    download: bool = True,
    network_timeout: float = 3.0,
) -> CifarData:
    """Load CIFAR-10 and carve a validation split out of its training set.

    Parameters
    ----------
    source : {"auto", "folder", "tfds"}
        Where to read from; see the module docstring for the order of ``"auto"``.
    data_dir : path, optional
        The image folder for ``"folder"``; defaults to ``$CIFAR10_DIR``.
    val_fraction : float
        Share of the 50,000 training images held out for validation, taken evenly
        from every class; ``0`` keeps them all for training.
    seed : int
        Seed of the validation split.
    tfds_data_dir : path, optional
        TFDS's data folder (default: TFDS's own, ``~/tensorflow_datasets``).
    download : bool
        Allow TFDS to download when the data is not prepared.
    network_timeout : float
        Seconds to wait for TFDS's servers before declaring the machine offline.

    Returns
    -------
    CifarData
        The splits as arrays, the class names and the source used.

    Raises
    ------
    DataError
        If no source works; the message names the problem and how to fix it.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if source not in ("auto", "folder", "tfds"):
        raise ValueError(f"source must be 'auto', 'folder' or 'tfds', got {source!r}")

    folder = data_dir if data_dir is not None else os.environ.get(ENV_DIR) or None
    if source == "folder" or (source == "auto" and folder is not None):
        if folder is None:
            raise DataError(
                f"source='folder' needs a data folder: pass data_dir or set {ENV_DIR}.\n"
                + HOW_TO_GET_DATA
            )
        (x_tr, y_tr), (x_te, y_te), names = read_image_folder_cached(folder)
        described = describe_folder(folder)
        if is_original_release(x_tr):
            described = "an image folder (the original images, PNG files)"
    else:
        allow_download = download and source in ("auto", "tfds")
        (x_tr, y_tr), (x_te, y_te), names = read_tfds(
            tfds_data_dir, download=allow_download, network_timeout=network_timeout
        )
        described = "TensorFlow Datasets (cifar10)"

    x_tr, y_tr, x_va, y_va = split_validation(x_tr, y_tr, val_fraction, seed=seed)
    return CifarData(x_tr, y_tr, x_va, y_va, x_te, y_te, tuple(names), described)


CACHE_ENV = "CIFAR_TUTORIAL_CACHE"
"""Environment variable naming the folder for decoded image folders (default:
``$XDG_CACHE_HOME/cifar-tutorial/arrays``, else ``~/.cache/cifar-tutorial/arrays``);
set it to an empty string to turn the cache off."""

CACHE_MIN_IMAGES = 10_000
"""Folders with fewer files are decoded every time: they take under a few seconds."""


ORIGINAL_TRAIN_MEAN = (125.306918, 122.950394, 113.865383)
"""Per-channel mean of the 50,000 training images of the original CIFAR-10 release,
on the uint8 scale (chapter 1); a lossless copy reproduces it to every digit."""


def is_original_release(x_train: np.ndarray) -> bool:
    """Tell whether ``x_train`` holds the 50,000 original training images (chapter 1).

    A lossy copy (JPEG) moves every pixel by a few grey levels, which shifts the
    per-channel means by far more than the 1e-5 this check allows.
    """
    if x_train.shape != (50_000, 32, 32, 3):
        return False
    mean = x_train.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    return bool(np.allclose(mean, ORIGINAL_TRAIN_MEAN, rtol=0, atol=1e-5))


def describe_folder(folder: str | os.PathLike) -> str:
    """Name an image folder by the kind of files it holds, for ``CifarData.source``.

    PNG is lossless, so a PNG folder exported from the original release holds its
    pixels exactly; JPEG files are a lossy copy.
    """
    if any(Path(folder).glob("train/*/*.jp*g")):
        return "an image folder (JPEG files, a lossy copy)"
    if any(Path(folder).glob("train/*/*.png")):
        return "an image folder (PNG files, lossless)"
    return "an image folder"


def _cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return Path(value) if value else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar-tutorial" / "arrays"


def _folder_key(root: Path) -> tuple[str, int]:
    """A digest of every file's relative path, size and modification time, and the
    number of files."""
    digest = hashlib.sha256(str(root.resolve()).encode())
    count = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            count += 1
            digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24], count


def read_image_folder_cached(
    root: str | os.PathLike,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """:func:`~cifar_tutorial.sources.read_image_folder`, decoded once and kept.

    Decoding the 60,000 PNG files of CIFAR-10 takes about 20 s on two cores;
    reading the decoded arrays back takes about one. The arrays are kept in
    :data:`CACHE_ENV`'s folder (outside the book), under a digest of the folder's
    file names, sizes and modification times, so a changed folder is read anew.
    Folders under :data:`CACHE_MIN_IMAGES` files are not kept. A cache that cannot
    be read or written is skipped, never an error.
    """
    root = Path(root)
    cache = _cache_dir()
    target = None
    if cache is not None and root.is_dir():
        key, count = _folder_key(root)
        target = cache / f"{key}.npz" if count >= CACHE_MIN_IMAGES else None
    if target is not None:
        try:
            with np.load(target) as z:
                names = [str(n) for n in z["names"]]
                return (z["x_train"], z["y_train"]), (z["x_test"], z["y_test"]), names
        except (OSError, KeyError, ValueError):
            pass
    (x_tr, y_tr), (x_te, y_te), names = read_image_folder(root)
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.stem}.{os.getpid()}.npz")
            np.savez(partial, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                     names=np.array(names))
            os.replace(partial, target)
        except OSError:
            pass
    return (x_tr, y_tr), (x_te, y_te), names


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of every class for validation (stratified, seeded).

    Parameters
    ----------
    x, y : numpy.ndarray
        Images and integer labels.
    fraction : float
        Share to hold out, in ``[0, 1)``.
    seed : int
        Seed of the choice.

    Returns
    -------
    tuple of numpy.ndarray
        ``x_train, y_train, x_val, y_val``; both parts keep their original order.
    """
    rng = np.random.default_rng(seed)
    val_idx: list[np.ndarray] = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = int(round(fraction * len(members)))
        val_idx.append(rng.choice(members, size=k, replace=False))
    is_val = np.zeros(len(y), dtype=bool)
    if val_idx:
        is_val[np.concatenate(val_idx)] = True
    return x[~is_val], y[~is_val], x[is_val], y[is_val]


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """Scale images to the float32 ``[0, 1]`` range every model here is given (chapter 5).

    ``uint8`` pixels are divided by 255, as :meth:`CifarData.dataset` does; float
    images are taken to be in that range already and only cast to float32.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Count the examples of each class (chapter 1 shows CIFAR-10 is balanced).

    Parameters
    ----------
    labels : array_like of int
        Integer labels.
    num_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``num_classes`` counts.
    """
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
