"""Where CIFAR-10 comes from: an image folder or TensorFlow Datasets (chapter 5).

:func:`cifar_tutorial.data.load_cifar10` reads through this module:

- :func:`read_image_folder` reads ``root/{train,test}/<class>/*.{jpg,jpeg,png}`` in
  ``tfds.ImageFolder``'s order, leaving out the hidden files that it would read,
  after :func:`check_image_folder` has checked the layout (offline);
- :func:`read_tfds` reads TFDS's ``cifar10``, downloading it once when its server
  answers within seconds;
- :func:`write_image_folder` writes arrays, such as Keras' ``cifar10.load_data()``,
  as an image folder of lossless PNG files (the benchmarks page's runs read one).

The two readers return uint8 arrays; all three fail with a :class:`~cifar_tutorial.errors.DataError`
whose message names the problem and how to get the data.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from cifar_tutorial.errors import DataError

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SHAPE",
    "ENV_DIR",
    "check_image_folder",
    "read_image_folder",
    "read_tfds",
    "write_image_folder",
]

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
"""The environment variable that names the image folder."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
TFDS_HOST = ("www.cs.toronto.edu", 443)
"""Where TFDS downloads ``cifar10`` from; probed before any download starts."""


HOW_TO_GET_DATA = (
    "To get CIFAR-10, either\n"
    "  * point CIFAR10_DIR (or data_dir=/--data-dir) at an image folder laid out as "
    "train/<class>/*.jpg and test/<class>/*.jpg, or\n"
    "  * connect to the internet once and use source='tfds' (TensorFlow Datasets "
    "downloads and prepares cifar10, about 160 MB), or\n"
    "  * put cifar-10-binary.tar.gz in <tfds data dir>/downloads/manual/ and use "
    "source='tfds'."
)


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


def write_image_folder(
    root: str | os.PathLike,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str] = CLASS_NAMES,
) -> Path:
    """Write CIFAR-10 arrays as ``root/{train,test}/<class>/<index>.png``.

    PNG is lossless, so :func:`read_image_folder` gives back the same pixels and
    labels (in its own order). The files go to a sibling folder ending in
    ``.partial`` first, which becomes ``root`` only once every file is written: an
    interrupted run leaves no folder that looks complete, and the next run starts
    that sibling afresh.

    Parameters
    ----------
    root : path
        The folder to create; it must not exist yet.
    train, test : tuple of arrays
        ``(images, labels)``: uint8 images of shape ``(n, 32, 32, 3)`` and integer
        labels of shape ``(n,)`` or ``(n, 1)``, as ``keras.datasets.cifar10.load_data()``
        returns them.
    class_names : sequence of str
        The folder name of each label.

    Returns
    -------
    Path
        ``root``.

    Raises
    ------
    DataError
        If ``root`` exists, or the arrays are not CIFAR-10's shapes and labels.
    """
    root = Path(root)
    if root.exists():
        raise DataError(f"{root} exists already; write_image_folder makes a new folder: "
                        "name one that does not exist, or remove this one")
    splits = [(split, x, np.asarray(y).reshape(-1)) for split, (x, y) in zip(SPLITS, (train, test))]
    for split, x, y in splits:
        if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or len(x) != len(y):
            raise DataError(f"the {split} images must be uint8 of shape (n, 32, 32, 3) with one "
                            f"label each; got {x.dtype} {x.shape} and {len(y)} labels")
        if len(y) and not 0 <= y.min() <= y.max() < len(class_names):
            raise DataError(f"the {split} labels must lie in 0..{len(class_names) - 1}; "
                            f"got {y.min()}..{y.max()}")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted run left
    for split, x, y in splits:
        for name in class_names:
            (partial / split / name).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image).save(partial / split / class_names[label] / f"{index:05d}.png")
    partial.rename(root)
    return root


def _decode_checked(path, label):
    """Decode one image file keeping its own channels; flag it unless 32x32x3."""
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
    import tensorflow_datasets as tfds  # seconds to import: only when TFDS is asked for

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
