"""Corruptions in the manner of CIFAR-10-C (chapter 11)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cifar_tutorial import corruptions


def _photos(n: int = 12, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth colour images with some texture and mid-range values, like photographs."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 216, size=(n, 6, 6, 3), dtype=np.uint8)
    smooth = np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BICUBIC))
                       for c in coarse]).astype(np.float64)
    texture = rng.normal(0, 6, size=smooth.shape)
    return np.clip(smooth + texture, 0, 255).round().astype(np.uint8)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_shapes_and_dtypes_are_kept(name: str) -> None:
    batch = _photos(3)
    out = corruptions.corrupt(batch, name, 3)
    assert out.shape == batch.shape and out.dtype == np.uint8
    one = corruptions.corrupt(batch[0], name, 3)
    assert one.shape == (32, 32, 3) and one.dtype == np.uint8
    wide = np.ascontiguousarray(np.concatenate([batch, batch], axis=2))  # (3, 32, 64, 3)
    assert corruptions.corrupt(wide, name, 2).shape == wide.shape


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_the_same_seed_gives_the_same_images(name: str) -> None:
    batch = _photos(4)
    first = corruptions.corrupt(batch, name, 4, seed=3)
    np.testing.assert_array_equal(first, corruptions.corrupt(batch, name, 4, seed=3))
    np.testing.assert_array_equal(batch, _photos(4))  # the input is left alone


def test_noise_depends_on_the_seed() -> None:
    batch = _photos(2)
    a = corruptions.corrupt(batch, "gaussian_noise", 5, seed=0)
    b = corruptions.corrupt(batch, "gaussian_noise", 5, seed=1)
    assert not np.array_equal(a, b)
    # on the [0, 1] scale its spread is the severity's standard deviation (clipping aside)
    diff = (a.astype(float) - batch) / 255
    assert diff.std() == pytest.approx(0.10, rel=0.05)


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_more_severe_is_farther_from_the_original(name: str) -> None:
    batch = _photos(12)
    distances = [_distance(corruptions.corrupt(batch, name, s), batch) for s in range(0, 6)]
    assert distances[0] == 0
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


def test_contrast_and_brightness_by_hand() -> None:
    flat = np.full((2, 2, 3), 100, dtype=np.uint8)
    flat[0, 0] = 200                                     # channel mean 125
    low = corruptions.contrast(flat, 0.4)
    assert low[0, 0, 0] == 155 and low[1, 1, 0] == 115   # 125 + 0.4 * 75, 125 - 0.4 * 25
    grey = np.full((1, 1, 3), 51, dtype=np.uint8)        # value 0.2, no saturation
    assert corruptions.brightness(grey, 0.3)[0, 0].tolist() == [128, 128, 128]
    white = np.full((1, 1, 3), 250, dtype=np.uint8)
    assert corruptions.brightness(white, 0.3)[0, 0].tolist() == [255, 255, 255]


def test_blur_keeps_a_flat_image_and_spreads_a_point() -> None:
    flat = np.full((8, 8, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(corruptions.gaussian_blur(flat, 1.0), flat)
    point = np.zeros((9, 9, 3), dtype=np.uint8)
    point[4, 4] = 255
    out = corruptions.gaussian_blur(point, 1.0).astype(float)
    assert out[4, 4, 0] == out.max() and 0 < out[4, 4, 0] < 255
    np.testing.assert_array_equal(out, out[::-1, ::-1])  # symmetric
    assert out[..., 0].sum() == pytest.approx(255, rel=0.05)  # mass kept (rounding aside)


def test_pixelate_makes_blocks() -> None:
    image = _photos(1)[0]
    out = corruptions.pixelate(image, 0.5)               # 16x16 blocks of 2x2
    np.testing.assert_array_equal(out[0::2, 0::2], out[1::2, 1::2])
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 16 * 16


def test_jpeg_sweep_gets_worse_with_lower_quality() -> None:
    batch = _photos(8)
    errors = [_distance(corruptions.jpeg(batch, q), batch) for q in (95, 75, 50, 20, 5)]
    assert all(a < b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("call, message", [
    (lambda: corruptions.corrupt(np.zeros((32, 32, 3)), "contrast", 1), "uint8"),
    (lambda: corruptions.corrupt(np.zeros((32, 32), np.uint8), "contrast", 1), "RGB"),
    (lambda: corruptions.corrupt(np.zeros((32, 32, 3), np.uint8), "fog", 1), "unknown corruption"),
    (lambda: corruptions.corrupt(np.zeros((32, 32, 3), np.uint8), "jpeg", 6), "severity"),
    (lambda: corruptions.jpeg(np.zeros((32, 32, 3), np.uint8), 100), "quality"),
    (lambda: corruptions.pixelate(np.zeros((32, 32, 3), np.uint8), 0), "fraction"),
    (lambda: corruptions.gaussian_blur(np.zeros((32, 32, 3), np.uint8), 0), "sigma"),
])
def test_bad_arguments_are_named(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()



def test_jpeg_quality_is_read_back(tmp_path) -> None:
    image = Image.fromarray(_photos(1)[0])
    for quality in (20, 75, 93):
        image.save(tmp_path / f"q{quality}.jpg", quality=quality)
        assert corruptions.jpeg_quality(tmp_path / f"q{quality}.jpg") == quality
    image.save(tmp_path / "lossless.png")
    assert corruptions.jpeg_quality(tmp_path / "lossless.png") is None
    custom = {0: [1] * 64, 1: [2] * 64}                  # tables no quality of libjpeg's makes
    image.save(tmp_path / "custom.jpg", qtables=custom)
    assert corruptions.jpeg_quality(tmp_path / "custom.jpg") is None
