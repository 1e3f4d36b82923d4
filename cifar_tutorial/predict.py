"""Classify your own image files with a trained model (chapter 7, "The seed's CNN").

Chapter 7 saves the seed's CNN with ``model.save``, loads it back with
``keras.models.load_model`` and classifies a photo that is not one of CIFAR-10's;
``python -m cifar_tutorial predict`` does the same from the command line.

- :func:`load_image` -- any image file to a 32x32x3 uint8 array, like CIFAR-10's;
- :func:`image_probabilities` and :func:`images_probabilities` -- one or many
  files to the ten class probabilities, whatever head the model ends in;
- :func:`top_k` -- the most probable classes, highest first;
- :func:`load_model` -- a saved model, or a :class:`ModelError` that says why not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_tutorial import (
    fastnet,  # noqa: F401 - registers the fast net's layers for loading
    models,  # noqa: F401 - registers the output heads for loading
)
from cifar_tutorial.data import CLASS_NAMES, IMAGE_SHAPE
from cifar_tutorial.errors import ImageError, ModelError
from cifar_tutorial.evaluate import predict_probabilities

BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""The colour that transparent pixels are composited on (white)."""

RESAMPLING = Image.Resampling.LANCZOS
"""Pillow's Lanczos filter, which widens with the reduction factor, so shrinking a
large photo averages over every source pixel instead of skipping most of them
(no aliasing), and it keeps edges sharper than a box average."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency on :data:`BACKGROUND`."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey levels: Pillow's own conversion clips at 255 instead of scaling.
        grey = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as CIFAR-10 stores its images: 32x32 RGB, uint8 (chapter 7).

    Any size and any of Pillow's modes are accepted. The steps, in order:

    1. decode the whole file (so a truncated file fails here, not later) and turn
       it upright as its EXIF orientation says (photos from phones);
    2. convert to RGB: transparent pixels (RGBA, LA, palette with transparency)
       are composited on white; grey levels (L, 16-bit I;16) are repeated in the
       three channels, 16-bit values scaled to 0-255; palette, CMYK, YCbCr and
       others go through Pillow's conversion;
    3. crop the largest centred square, since CIFAR-10's images are square and
       stretching would distort the object;
    4. resize it to 32x32 with the antialiasing Lanczos filter (:data:`RESAMPLING`).

    Parameters
    ----------
    path : str or os.PathLike
        An image file (PNG, JPEG, GIF, BMP, WebP, TIFF, ...). An animated image
        gives its first frame.

    Returns
    -------
    numpy.ndarray
        ``(32, 32, 3)`` uint8.

    Raises
    ------
    ImageError
        If the file is missing, a directory, unreadable, not an image, or corrupt.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file; check the path and its spelling")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image file; "
                         "give the path of an image inside it")
    try:
        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            rgb = _to_rgb(upright)
    except PermissionError:
        raise ImageError(f"{path} cannot be read (permission denied); "
                         "check the file's permissions") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file Pillow can read; "
                         "give a PNG, JPEG, GIF, BMP, WebP or TIFF file") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path} is too large to decode safely ({err}); "
                         "shrink it first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"{path} is corrupt or truncated ({err}); "
                         "re-save or download the image again") from None
    height, width, _ = IMAGE_SHAPE
    square = ImageOps.fit(rgb, (width, height), method=RESAMPLING, centering=(0.5, 0.5))
    return np.asarray(square, dtype=np.uint8).copy()


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a model saved with ``model.save("....keras")`` (chapter 7).

    Importing this module imports :mod:`cifar_tutorial.models` (the output heads
    of chapter 3) and :mod:`cifar_tutorial.fastnet`, which register the book's
    custom layers with Keras, so every model the book trains loads.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.keras`` file, e.g. ``runs/seed/model.keras``.

    Returns
    -------
    keras.Model
        The model, for 32x32x3 inputs and ten outputs.

    Raises
    ------
    ModelError
        If the path is missing, a directory, not a Keras model, or a model whose
        input or output does not fit CIFAR-10.
    """
    path = Path(path)
    train_hint = "train one with `python -m cifar_tutorial train --out DIR`"
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; {train_hint}")
    if path.is_dir():
        raise ModelError(f"model path {path} is a directory; give the .keras file "
                         f"inside it (e.g. {path / 'model.keras'})")
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - any failure here is the file's
        detail = " ".join(str(err).split())[:160]
        raise ModelError(f"{path} cannot be loaded as a Keras model "
                         f"({type(err).__name__}: {detail}); {train_hint}") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model; "
                         f"{train_hint}")
    inputs = tuple(model.inputs[0].shape[1:]) if model.inputs else None
    outputs = tuple(model.outputs[0].shape[1:]) if model.outputs else None
    if inputs != IMAGE_SHAPE or outputs != (len(CLASS_NAMES),):
        raise ModelError(f"{path} maps {inputs} to {outputs}, not CIFAR-10's "
                         f"{IMAGE_SHAPE} images to {len(CLASS_NAMES)} classes; {train_hint}")
    return model


def images_probabilities(
    model: keras.Model, paths: Sequence[str | os.PathLike]
) -> list[np.ndarray | ImageError]:
    """Class probabilities for many image files, in one batch (chapter 7).

    Parameters
    ----------
    model : keras.Model
        A trained model, any head.
    paths : sequence of path
        Image files.

    Returns
    -------
    list
        One entry per path, in order: a ``(classes,)`` float64 array summing to
        one, or the :class:`ImageError` that stopped that file (the others are
        still classified).
    """
    results: list[np.ndarray | ImageError] = []
    readable: list[int] = []
    images: list[np.ndarray] = []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path))
        except ImageError as err:
            results.append(err)
            continue
        results.append(np.empty(0))
        readable.append(i)
    if images:
        probabilities = predict_probabilities(model, np.stack(images))
        for i, row in zip(readable, probabilities):
            results[i] = row
    return results


def image_probabilities(model: keras.Model, path: str | os.PathLike) -> np.ndarray:
    """The ten class probabilities of one image file (chapter 7).

    The file is read with :func:`load_image`, and the model's outputs become a
    distribution as in :func:`cifar_tutorial.evaluate.predict_probabilities`
    (softmax of logits, other heads rescaled to sum to one).

    Parameters
    ----------
    model : keras.Model
        A trained model, any head.
    path : str or os.PathLike
        An image file.

    Returns
    -------
    numpy.ndarray
        ``(classes,)`` float64, non-negative, summing to one.

    Raises
    ------
    ImageError
        If the file cannot be read as an image.
    """
    (result,) = images_probabilities(model, [path])
    if isinstance(result, ImageError):
        raise result
    return result


def top_k(
    probabilities: np.ndarray, k: int = 3, class_names: Sequence[str] | None = None
) -> list[tuple[str, float]]:
    """The ``k`` most probable classes with their probabilities, highest first (chapter 7).

    Parameters
    ----------
    probabilities : numpy.ndarray
        One probability per class, shape ``(classes,)``.
    k : int
        How many; more than the number of classes gives them all.
    class_names : sequence of str, optional
        Names in label order; CIFAR-10's by default.

    Returns
    -------
    list of (str, float)
        ``(class name, probability)`` pairs; ties keep label order.

    Raises
    ------
    ValueError
        If ``k < 1`` or the names do not match the probabilities.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    names = tuple(CLASS_NAMES if class_names is None else class_names)
    if p.ndim != 1:
        raise ValueError(f"expected one probability per class, got shape {p.shape}")
    if len(names) != len(p):
        raise ValueError(f"{len(names)} class names for {len(p)} probabilities")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    order = np.argsort(-p, kind="stable")[:k]
    return [(names[i], float(p[i])) for i in order]
