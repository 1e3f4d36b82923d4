"""Common corruptions of images, five severities each, in the manner of CIFAR-10-C.

Chapter 11 ("Can we trust the classifier?") asks what a network trained on clean
photographs does with noisy, blurred, washed-out, over-exposed, heavily compressed
or coarse ones. Hendrycks and Dietterich (2019) published CIFAR-10-C, the test set
under 19 corruptions at five severities; it cannot be downloaded on the machines
this book is built on, so this module makes six of those corruptions itself, with
CIFAR-10-C's parameters for 32x32 images:

==================  ==========================================  ====================
corruption          what it does                                severities 1 to 5
==================  ==========================================  ====================
``gaussian_noise``  adds normal noise, standard deviation       0.04 ... 0.10
``gaussian_blur``   blurs with a Gaussian kernel, sigma         0.4 ... 1.0 pixels
``contrast``        pulls pixels towards the image's mean       factor 0.75 ... 0.15
``brightness``      adds to the HSV value (brightness)          0.05 ... 0.30
``jpeg``            re-encodes as JPEG (Pillow) at quality q    q = 80 ... 40
``pixelate``        shrinks with box filtering and enlarges     32 * 0.95 ... * 0.65
==================  ==========================================  ====================

Values are on the ``[0, 1]`` scale. Every function takes uint8 images, one
``(h, w, 3)`` or a batch ``(n, h, w, 3)``, and returns uint8 images of the same
shape, rounded to the nearest level. Only the noise is random, and it is drawn from
a generator seeded by ``seed``: the same call gives the same images.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from functools import cache

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image

__all__ = [
    "SEVERITIES",
    "CORRUPTIONS",
    "gaussian_noise",
    "gaussian_blur",
    "contrast",
    "brightness",
    "jpeg",
    "pixelate",
    "corrupt",
    "jpeg_quality",
]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""The five severities of CIFAR-10-C; :func:`corrupt` also takes 0, the image itself."""

CORRUPTIONS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
"""Each corruption's parameter at severities 1 to 5 (CIFAR-10-C's values for 32x32
images): noise standard deviation, blur sigma, contrast factor, brightness shift,
JPEG quality, and the pixelated side as a fraction of the image's."""


def _checked(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """A ``(n, h, w, 3)`` view of uint8 ``images`` and whether it was a single image."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0-255), got {x.dtype}; "
                         "convert with (x * 255).round().astype('uint8')")
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"expected RGB images (h, w, 3) or (n, h, w, 3), got shape {x.shape}")
    return (x[None], True) if x.ndim == 3 else (x, False)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 255.0


def _per_image(images: np.ndarray, apply: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``apply`` (unit-scale ``(n, h, w, 3)`` to the same) and give back uint8."""
    x, single = _checked(images)
    out = _to_uint8(apply(_unit(x)))
    return out[0] if single else out


def gaussian_noise(images: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """Add independent normal noise of standard deviation ``std`` to every value (chapter 11).

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    std : float
        Standard deviation on the ``[0, 1]`` scale.
    seed : int
        Seed of the noise.

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape, clipped to ``[0, 255]``.
    """
    rng = np.random.default_rng(seed)
    return _per_image(images, lambda x: x + rng.normal(0.0, std, size=x.shape))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(4.0 * sigma + 0.5))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-offsets**2 / (2.0 * sigma**2))
    return kernel / kernel.sum()


def _smooth(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``x`` with a symmetric 1-D ``kernel`` along ``axis``, mirroring the edges."""
    r = len(kernel) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    padded = np.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    return sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(kernel))


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur with a Gaussian of ``sigma`` pixels, one axis after the other (chapter 11).

    The kernel reaches four standard deviations each way; the image is mirrored at
    its edges.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    sigma : float
        Standard deviation of the kernel, in pixels (positive).

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    kernel = _gaussian_kernel(sigma)
    return _per_image(images, lambda x: _smooth(_smooth(x, kernel, 1), kernel, 2))


def contrast(images: np.ndarray, factor: float) -> np.ndarray:
    """Scale each channel's distance from its mean over the image by ``factor`` (chapter 11).

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    factor : float
        Below 1 lowers the contrast (0 leaves a flat image of the mean colour).

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape.
    """
    def apply(x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=(1, 2), keepdims=True)
        return (x - mean) * factor + mean

    return _per_image(images, apply)


def brightness(images: np.ndarray, shift: float) -> np.ndarray:
    """Add ``shift`` to the value channel in HSV colour space, keeping hue and saturation (chapter 11).

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    shift : float
        Added to the value (the largest of R, G, B), which is then clipped to ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape.
    """
    def apply(x: np.ndarray) -> np.ndarray:
        hsv = rgb_to_hsv(x)
        hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0.0, 1.0)
        return hsv_to_rgb(hsv)

    return _per_image(images, apply)


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """Encode each image as JPEG at ``quality`` with Pillow and decode it again (chapter 11).

    Pillow's defaults otherwise: 4:2:0 chroma subsampling, as in the JPEG copy of
    CIFAR-10 this book reads.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    quality : int
        JPEG quality, 1 (smallest file) to 95.

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape.
    """
    if not 1 <= int(quality) <= 95 or int(quality) != quality:
        raise ValueError(f"JPEG quality must be a whole number from 1 to 95, got {quality}")
    x, single = _checked(images)
    out = np.empty_like(x)
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return out[0] if single else out


def pixelate(images: np.ndarray, fraction: float) -> np.ndarray:
    """Shrink to ``fraction`` of the side with a box filter, then enlarge back (chapter 11).

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    fraction : float
        The small image's side relative to the original, in ``(0, 1]``
        (0.65 of 32 pixels gives 20).

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    x, single = _checked(images)
    h, w = x.shape[1:3]
    small = (max(1, int(w * fraction)), max(1, int(h * fraction)))
    out = np.empty_like(x)
    for i, image in enumerate(x):
        shrunk = Image.fromarray(image).resize(small, Image.Resampling.BOX)
        out[i] = np.asarray(shrunk.resize((w, h), Image.Resampling.BOX))
    return out[0] if single else out


def corrupt(images: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply one of :data:`CORRUPTIONS` at a severity from 1 to 5 (chapter 11).

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(h, w, 3)`` or ``(n, h, w, 3)``.
    corruption : str
        A key of :data:`CORRUPTIONS`.
    severity : int
        1 (mild) to 5 (severe); 0 returns a copy of the images.
    seed : int
        Seed of the random corruptions (the noise).

    Returns
    -------
    numpy.ndarray
        uint8 images of the same shape.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}")
    if severity not in (0, *SEVERITIES):
        raise ValueError(f"severity must be 0 to 5, got {severity}")
    if severity == 0:
        _checked(images)
        return np.array(images, copy=True)
    value = CORRUPTIONS[corruption][severity - 1]
    if corruption == "gaussian_noise":
        return gaussian_noise(images, value, seed=seed)
    apply = {
        "gaussian_blur": gaussian_blur,
        "contrast": contrast,
        "brightness": brightness,
        "jpeg": jpeg,
        "pixelate": pixelate,
    }[corruption]
    return apply(images, value)


@cache
def _pillow_tables(quality: int) -> dict[int, tuple[int, ...]]:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as encoded:
        return {k: tuple(v) for k, v in encoded.quantization.items()}


def jpeg_quality(path: str | os.PathLike) -> int | None:
    """The quality a JPEG file was saved at, if it used the standard (libjpeg, Pillow) tables (chapter 11).

    A JPEG file stores the quantization tables its encoder used; libjpeg, and
    Pillow with it, scales two standard tables by the quality. Comparing the
    file's tables with Pillow's at every quality from 1 to 100 finds the one that
    made them. Other encoders may use other tables; then there is no answer.

    Parameters
    ----------
    path : path
        An image file.

    Returns
    -------
    int or None
        The quality, or None for a file that is not a JPEG or whose tables are
        not the standard ones.
    """
    with Image.open(path) as image:
        if image.format != "JPEG":
            return None
        tables = {k: tuple(v) for k, v in image.quantization.items()}
    return next((q for q in range(1, 101) if _pillow_tables(q) == tables), None)
