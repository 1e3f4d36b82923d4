"""CIFAR-10 as arrays and as ``tf.data`` pipelines (chapter 4, "The data pipeline").

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
:class:`DataError` that says how to get the data.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10's classes in label order."""

IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)
ENV_DIR = "CIFAR10_DIR"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
TFDS_HOST = ("www.cs.toronto.edu", 443)
"""Where TFDS downloads ``cifar10`` from; probed before any download starts."""

Source = Literal["auto", "folder", "tfds"]
LabelMode = Literal["sparse", "onehot"]

HOW_TO_GET_DATA = (
    "To get CIFAR-10, either\n"
    "  * point CIFAR10_DIR (or data_dir=/--data-dir) at an image folder laid out as "
    "train/<class>/*.jpg and test/<class>/*.jpg, or\n"
    "  * connect to the internet once and use source='tfds' (TensorFlow Datasets "
    "downloads and prepares cifar10, about 160 MB), or\n"
    "  * put cifar-10-binary.tar.gz in <tfds data dir>/downloads/manual/ and use "
    "source='tfds'."
)


class DataError(ValueError):
    """The data could not be found or read; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
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
        """One line: the source and the split sizes."""
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.sizes().items())
        return f"CIFAR-10 from {self.source}: {sizes}"

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
        from cifar_tutorial.runtime import run_mode

        mode = run_mode()
        if mode == "full":
            return self
        return self.subset(*(smoke if mode == "smoke" else quick))

    def limit_in_smoke_mode(
        self, train: int = 1024, val: int = 256, test: int = 512
    ) -> CifarData:
        """Old name of :meth:`for_run_mode` (smoke sizes only); removed once no chapter uses it."""
        return self.for_run_mode(smoke=(train, val, test))

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
    ):
        """Build a batched, scaled, prefetched ``tf.data.Dataset`` of one split.

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
            Shuffle seed. One seed gives one order: to get a new order each epoch,
            pass a new seed (the trainers in :mod:`cifar_tutorial.train` pass
            ``seed + epoch``, which makes an interrupted run resume exactly).
        augment : callable, optional
            A function ``(image, seed) -> image`` applied to each scaled image
            before batching, e.g. :func:`flip_and_translate`; ``seed`` is
            ``[seed, position]``.
        drop_remainder : bool
            Drop the last, smaller batch.

        Returns
        -------
        tf.data.Dataset
            Batches of ``(float32 images in [0, 1], labels)``.
        """
        import tensorflow as tf

        x, y = self.arrays(split)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(y) == 0:
            raise DataError(f"the {split!r} split is empty")
        if shuffle is None:
            shuffle = split == "train"
        num_classes = self.num_classes

        if label_mode not in ("sparse", "onehot"):
            raise ValueError(f"label_mode must be 'sparse' or 'onehot', got {label_mode!r}")
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=False)
        if augment is not None:
            def augment_one(position, example):
                image = tf.cast(example[0], tf.float32) / 255.0
                pair = tf.stack([tf.constant(seed, tf.int64), position])
                return augment(image, pair), example[1]

            ds = ds.enumerate().map(augment_one, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

        def prepare(images, labels):
            if augment is None:
                images = tf.cast(images, tf.float32) / 255.0
            if label_mode == "onehot":
                labels = tf.one_hot(labels, num_classes)
            return images, labels

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)


def flip_and_translate(pad: int = 4) -> Callable:
    """Make the augmentation of chapter 8: random horizontal flip and shift.

    The shift pads the image by reflection and crops a random 32x32 window, so the
    content moves by up to ``pad`` pixels each way. The random numbers are
    stateless: they come from the seed pair that :meth:`CifarData.dataset` passes
    (its seed and the example's position), so a seed always gives the same batches.

    Parameters
    ----------
    pad : int
        Largest shift in pixels.

    Returns
    -------
    callable
        ``(image, seed) -> image`` on one float image and a ``[2]`` int64 seed.
    """
    import tensorflow as tf

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
        (x_tr, y_tr), (x_te, y_te), names = read_image_folder(folder)
        described = "an image folder (JPEG files are a lossy re-encoding of CIFAR-10)"
        if not any(Path(folder).glob("train/*/*.jp*g")):
            described = "an image folder"
    else:
        allow_download = download and source in ("auto", "tfds")
        (x_tr, y_tr), (x_te, y_te), names = read_tfds(
            tfds_data_dir, download=allow_download, network_timeout=network_timeout
        )
        described = "TensorFlow Datasets (cifar10)"

    x_tr, y_tr, x_va, y_va = split_validation(x_tr, y_tr, val_fraction, seed=seed)
    return CifarData(x_tr, y_tr, x_va, y_va, x_te, y_te, tuple(names), described)


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


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def check_image_folder(root: str | os.PathLike, headers: bool = False) -> list[str]:
    """Check an image folder's layout and file names; optionally every image header.

    Hidden files (``.DS_Store`` and the like) are ignored. The layout check lists
    folders only and takes a fraction of a second for 60,000 files; with
    ``headers=True`` each image is also opened with Pillow, which reads its header
    (size and colour mode) but does not decode it: a few seconds more.
    :func:`read_image_folder` checks sizes while decoding instead, and calls this
    with ``headers=True`` only to name the culprit when decoding fails.

    Parameters
    ----------
    root : path
        The folder holding ``train/`` and ``test/``.
    headers : bool
        Also open every image and check that it is 32x32 RGB.

    Returns
    -------
    list of str
        The class names, sorted (label order).

    Raises
    ------
    DataError
        For a missing or empty folder, a missing split, class folders that differ
        between splits or from CIFAR-10's, a file that is not an image, an
        unreadable image, or an image that is not 32x32 RGB. The message names the
        file and the fix.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist.\n" + HOW_TO_GET_DATA)
    if not root.is_dir():
        raise DataError(f"data folder {root} is a file, not a folder.\n" + HOW_TO_GET_DATA)
    entries = [p for p in root.iterdir() if _visible(p)]
    if not entries:
        raise DataError(f"data folder {root} is empty.\n" + HOW_TO_GET_DATA)
    classes: dict[str, list[str]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(
                f"data folder {root} has no '{split}' folder; expected "
                f"{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg"
            )
        classes[split] = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and _visible(p))
        if not classes[split]:
            raise DataError(f"{split_dir} holds no class folders; expected {split_dir}/<class>/*.jpg")
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        raise DataError(
            f"class folders differ between train and test in {root}: only in train "
            f"{only_train}, only in test {only_test}. Both splits need the same classes."
        )
    if classes["train"] != sorted(CLASS_NAMES):
        raise DataError(
            f"class folders in {root} are {classes['train']}; CIFAR-10 has "
            f"{list(CLASS_NAMES)}. Rename or remove folders to match."
        )
    for split in SPLITS:
        for name in classes[split]:
            class_dir = root / split / name
            with os.scandir(class_dir) as it:  # d_type from the listing: no stat per file
                entries = sorted((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
            if not entries:
                raise DataError(f"class folder {class_dir} holds no images")
            for file_name, is_dir in entries:
                path = class_dir / file_name
                if is_dir:
                    raise DataError(f"{path} is a folder inside a class folder; remove it")
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(
                        f"{path} is not an image (only {', '.join(IMAGE_SUFFIXES)} are read); "
                        "remove it or move it out of the data folder"
                    )
                if not headers:
                    continue
                try:
                    with Image.open(path) as img:
                        size, mode = img.size, img.mode
                except (UnidentifiedImageError, OSError) as err:
                    raise DataError(
                        f"{path} cannot be read as an image ({err.__class__.__name__}); "
                        "delete it or replace it with a valid copy"
                    ) from None
                if size != IMAGE_SHAPE[:2] or mode != "RGB":
                    raise DataError(
                        f"{path} is {size[0]}x{size[1]} {mode}; CIFAR-10 images are 32x32 RGB. "
                        "Convert or remove it"
                    )
    return classes["train"]


def _find_undecodable(paths: Sequence[str]) -> Path | None:
    """Return the first of ``paths`` that Pillow cannot fully decode."""
    from PIL import Image

    for path in map(Path, sorted(paths)):
        try:
            with Image.open(path) as img:
                img.load()
        except Exception:  # noqa: BLE001 - any failure marks the culprit
            return path
    return None


def _image_files(root: Path, split: str, names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Visible image files of one split and their labels, in ``tfds.ImageFolder``'s order.

    Only the class folders in ``names`` are read and hidden files (``._x.jpg``
    copies from macOS, say) are skipped, so nothing else can shift the labels.
    """
    import random

    examples = [
        (os.path.join(root, split, name, f), label)
        for label, name in enumerate(names)
        for f in sorted(os.listdir(root / split / name))
        if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
    ]
    random.Random(split).shuffle(examples)  # the order tfds.ImageFolder gives
    return [p for p, _ in examples], [y for _, y in examples]


def read_image_folder(
    root: str | os.PathLike,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """Read ``root/{train,test}/<class>/*`` into uint8 arrays.

    The layout is checked first with :func:`check_image_folder`; an image that
    fails to decode, or is not 32x32 RGB, is named in the error. Images are decoded
    with ``tf.data`` in the order ``tfds.ImageFolder`` gives (classes sorted, files
    shuffled with a fixed seed per split), skipping hidden files and folders.

    Parameters
    ----------
    root : path
        The image folder.

    Returns
    -------
    tuple
        ``(x_train, y_train), (x_test, y_test), class_names``.

    Raises
    ------
    DataError
        If :func:`check_image_folder` refuses the folder or an image cannot be
        decoded.
    """
    import tensorflow as tf

    root = Path(root)
    names = check_image_folder(root)
    out = []
    for split in SPLITS:
        paths, labels = _image_files(root, split, names)
        ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int32)))
        ds = ds.map(_decode_checked, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        xs, ys, oks = [], [], []
        try:
            for x, y, ok in ds.batch(4096).as_numpy_iterator():
                xs.append(x)
                ys.append(y)
                oks.append(ok)
        except tf.errors.OpError:
            bad = _find_undecodable(paths)
            where = f"{bad} cannot be decoded" if bad else f"an image in {root / split} cannot be decoded"
            raise DataError(f"{where}; delete it or replace it with a valid copy") from None
        ok = np.concatenate(oks)
        if not ok.all():
            wrong = [paths[i] for i in np.flatnonzero(~ok)]
            check_image_folder(root, headers=True)  # names the first culprit precisely
            raise DataError(
                f"{len(wrong)} image(s) are not 32x32 RGB, e.g. {wrong[0]}; CIFAR-10 images "
                "are 32x32 RGB. Convert or remove them"
            )
        out.append((np.concatenate(xs), np.concatenate(ys)))
    return out[0], out[1], names


def _decode_checked(path, label):
    """Decode one image file keeping its own channels; flag it unless 32x32x3."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.uint8,
                               expand_animations=False)
    ok = tf.reduce_all(tf.equal(tf.shape(image), IMAGE_SHAPE))
    image = tf.cond(ok, lambda: image, lambda: tf.zeros(IMAGE_SHAPE, tf.uint8))
    return tf.ensure_shape(image, IMAGE_SHAPE), label, ok


def _to_numpy(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in ds.batch(4096).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int32)


def network_reachable(host: tuple[str, int] | None = None, timeout: float = 3.0) -> bool:
    """Tell within ``timeout`` seconds whether ``host`` accepts a TCP connection.

    Parameters
    ----------
    host : (str, int), optional
        Host name and port; :data:`TFDS_HOST` (read at call time) by default.
    timeout : float
        Seconds to wait (name lookup included).

    Returns
    -------
    bool
        True if a connection opened.
    """
    import threading

    host = TFDS_HOST if host is None else host
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection(host, timeout=timeout):
                result.append(True)
        except Exception:  # noqa: BLE001 - any failure means unreachable
            result.append(False)

    # A daemon thread: a name lookup that hangs offline must not keep the process
    # alive at exit either (a thread pool's worker would be joined at exit).
    thread = threading.Thread(target=connect, name="network-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result) and result[0]


def read_tfds(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    network_timeout: float = 3.0,
    name: str = "cifar10",
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """Read TFDS's ``cifar10`` into uint8 arrays, downloading it once if allowed.

    Before any download the function checks, within ``network_timeout`` seconds,
    that TFDS's server answers and that ``importlib_resources`` (which TFDS needs to
    download) is installed; otherwise it fails at once instead of retrying for
    minutes.

    Parameters
    ----------
    data_dir : path, optional
        TFDS's data folder.
    download : bool
        Allow a download when the data is not prepared.
    network_timeout : float
        Seconds to wait for the server.
    name : str
        The TFDS data set name.

    Returns
    -------
    tuple
        ``(x_train, y_train), (x_test, y_test), class_names``.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=None if data_dir is None else str(data_dir))

    def read_splits() -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for split in SPLITS:
            ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
            ds = ds.map(lambda x, y: (tf.ensure_shape(x, IMAGE_SHAPE), tf.cast(y, tf.int32)))
            out.append(_to_numpy(ds))
        return out

    if not _tfds_prepared(builder):
        try:
            # Prepared data TFDS cannot see in its index (or TFDS's test mocks).
            out = read_splits()
        except Exception:  # noqa: BLE001 - "not prepared" comes in several types
            out = None
        if out is not None:
            return out[0], out[1], list(builder.info.features["label"].names)
        if not download:
            raise DataError(
                f"TFDS '{name}' is not prepared in {builder.data_dir} and downloading is off.\n"
                + HOW_TO_GET_DATA
            )
        try:
            import importlib_resources  # noqa: F401
        except ImportError:
            raise DataError(
                "TFDS needs the package importlib_resources to download data: "
                "pip install importlib_resources"
            ) from None
        if not network_reachable(TFDS_HOST, timeout=network_timeout):
            raise DataError(
                f"TFDS '{name}' is not prepared and its server {TFDS_HOST[0]} cannot be "
                f"reached within {network_timeout:g} s (offline?).\n" + HOW_TO_GET_DATA
            )
        builder.download_and_prepare()
    out = read_splits()
    names = list(builder.info.features["label"].names)
    return out[0], out[1], names


def _tfds_prepared(builder) -> bool:
    try:
        return bool(builder.is_prepared())
    except Exception:  # noqa: BLE001 - an unreadable data dir counts as not prepared
        return False


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
