"""Classifying image files (chapter 7): reading any image, probabilities, errors."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_tutorial import errors, models, predict


def _photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (so JPEG keeps it close) of the given size."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1),
                    np.full(x.shape, 60.0 + 20 * seed)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


# --- load_image: every mode to 32x32x3 uint8 ------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (97, 53), (41, 300), (1, 1), (640, 480)])
def test_png_of_any_size_becomes_32x32_rgb(tmp_path: Path, size: tuple[int, int]) -> None:
    path = _save(Image.fromarray(_photo(*size)), tmp_path / "photo.png")
    image = predict.load_image(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_a_32x32_png_is_returned_unchanged(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = _save(Image.fromarray(pixels), tmp_path / "cifar.png")
    np.testing.assert_array_equal(predict.load_image(path), pixels)


def test_jpeg_is_read_close_to_its_pixels(tmp_path: Path) -> None:
    pixels = _photo(32, 32)
    path = _save(Image.fromarray(pixels), tmp_path / "photo.jpg", quality=95)
    image = predict.load_image(path)
    assert image.shape == (32, 32, 3)
    assert np.abs(image.astype(int) - pixels).mean() < 3


def test_rgba_transparency_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 200                 # red everywhere ...
    rgba[:, :32, 3] = 255              # ... opaque on the left half,
    rgba[:, 32:, 3] = 0                # transparent on the right half
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "cutout.png")
    image = predict.load_image(path).astype(int)
    np.testing.assert_array_equal(image[:, :12], np.broadcast_to([200, 0, 0], (32, 12, 3)))
    np.testing.assert_array_equal(image[:, 20:], np.full((32, 12, 3), 255))


def test_half_transparent_pixels_blend_with_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 128                 # black at half opacity
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "grey.png")
    np.testing.assert_allclose(predict.load_image(path), 127, atol=1)


def test_grayscale_modes_repeat_the_grey_level(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    path = _save(Image.fromarray(grey, "L"), tmp_path / "grey.png")
    image = predict.load_image(path)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey)
    la = Image.merge("LA", [Image.fromarray(grey, "L"), Image.new("L", (32, 32), 255)])
    np.testing.assert_array_equal(predict.load_image(_save(la, tmp_path / "la.png")), image)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(32, 0).repeat(8, 1)
    path = _save(Image.fromarray(levels), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    image = predict.load_image(path)
    np.testing.assert_array_equal(image[0, ::8, 0], [0, 64, 128, 255])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_palette_images_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    pal.paste(1, (20, 0, 40, 40))      # right half uses palette entry 1, red
    plain = predict.load_image(_save(pal, tmp_path / "pal.png"))
    np.testing.assert_array_equal(plain[:, 0], np.broadcast_to([10, 20, 30], (32, 3)))
    np.testing.assert_array_equal(plain[:, -1], np.broadcast_to([250, 0, 0], (32, 3)))
    gif = predict.load_image(_save(pal, tmp_path / "pal.gif", transparency=0))
    np.testing.assert_array_equal(gif[:, 0], np.full((32, 3), 255))   # entry 0 transparent
    np.testing.assert_array_equal(gif[:, -1], np.broadcast_to([250, 0, 0], (32, 3)))


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (50, 30), (0, 255, 255, 0))      # pure red in CMYK
    image = predict.load_image(_save(cmyk, tmp_path / "print.jpg", quality=95))
    assert image.shape == (32, 32, 3)
    assert image[..., 0].min() > 230 and image[..., 1:].max() < 25


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:, 16:] = 255                               # stored: white on the right
    exif = Image.Exif()
    exif[0x0112] = 3                                   # "rotate 180 to display"
    path = _save(Image.fromarray(pixels), tmp_path / "phone.png", exif=exif)
    image = predict.load_image(path)
    assert image[:, :16].min() == 255 and image[:, 16:].max() == 0


# --- resizing: crop the centre square, then an antialiased resize -----------------


def test_constant_colour_survives_any_resize(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (203, 117), (12, 140, 250)), tmp_path / "flat.png")
    image = predict.load_image(path)
    np.testing.assert_array_equal(image, np.broadcast_to([12, 140, 250], (32, 32, 3)))


@pytest.mark.parametrize("wide", [True, False])
def test_the_centre_square_is_kept_not_squashed(tmp_path: Path, wide: bool) -> None:
    # A red 100x100 square in the middle of a 300x100 (or 100x300) blue image.
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[..., 2] = 255
    pixels[:, 100:200] = [255, 0, 0]
    if not wide:
        pixels = pixels.transpose(1, 0, 2).copy()
    image = predict.load_image(_save(Image.fromarray(pixels), tmp_path / "banner.png"))
    # Squashing would put blue in the outer thirds; the crop leaves red everywhere
    # but in the outer three pixels, where the filter reaches past the crop.
    inner = image[3:-3, 3:-3].astype(int)
    np.testing.assert_allclose(inner, np.broadcast_to([255, 0, 0], inner.shape), atol=1)
    assert image[..., 2].mean() < 20


def test_downscaling_averages_a_ramp_and_does_not_alias(tmp_path: Path) -> None:
    # A 256-wide horizontal ramp: output column j covers source columns 8j..8j+7,
    # whose mean is 8j + 3.5.
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    image = predict.load_image(_save(Image.fromarray(ramp, "L"), tmp_path / "ramp.png"))
    expected = 8 * np.arange(32) + 3.5
    np.testing.assert_allclose(image[16, 1:-1, 0], expected[1:-1], atol=1)
    # One-pixel stripes (black, white, ...) shrink to mid-grey, not to a pattern
    # of solid black and white as sampling every eighth pixel would give.
    stripes = np.tile((np.arange(256) % 2 * 255).astype(np.uint8), (256, 1))
    image = predict.load_image(_save(Image.fromarray(stripes, "L"), tmp_path / "stripes.png"))
    error = np.abs(image.astype(float) - 127.5)
    assert error[:, 2:-2].max() <= 2 and error.max() <= 8    # at the border, <= 8


# --- load_image: bad files ----------------------------------------------------------


def _message(path: Path, load=predict.load_image, error=predict.ImageError) -> str:
    """The one-line message with which ``load(path)`` refuses ``path``."""
    with pytest.raises(error) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _message(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _message(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, I am text\n", b"\x89PNG\r\n\x1a\n"])
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    message = _message(path)
    assert "not an image" in message or "corrupt" in message


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_image_fails_at_load(tmp_path: Path, fmt: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(pixels), tmp_path / f"whole.{fmt}")
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    assert "corrupt or truncated" in _message(cut)


def test_image_error_is_the_packages_user_error() -> None:
    assert predict.ImageError is errors.ImageError
    assert issubclass(predict.ImageError, errors.CifarTutorialError)
    assert not issubclass(predict.ImageError, ValueError)  # a bug's ValueError is not one


# --- probabilities for every head ------------------------------------------------


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("images")
    return [_save(Image.fromarray(_photo(w, h, seed)), root / f"{seed}.png")
            for seed, (w, h) in enumerate([(32, 32), (120, 80), (33, 200)])]


@pytest.mark.parametrize("head", models.HEADS)
def test_probabilities_sum_to_one_for_every_head(head: str, image_files: list[Path]) -> None:
    keras.utils.set_random_seed(0)
    model = models.seed_cnn(head=head, base=10.0)
    p = predict.image_probabilities(model, image_files[1])
    assert p.shape == (10,) and p.min() >= 0
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    many = predict.images_probabilities(model, image_files)
    assert len(many) == 3 and all(row.shape == (10,) for row in many)
    np.testing.assert_allclose(many[1], p, atol=1e-6)
    np.testing.assert_allclose([row.sum() for row in many], 1.0, atol=1e-9)


@pytest.mark.parametrize("head", ["l2", "l1_relu"])
def test_all_negative_scores_give_the_uniform_distribution(head: str, image_files) -> None:
    # The failure of chapter 3's L2 run: every score below zero. Rescaling nothing
    # would give ten zeros; no evidence for any class means 1/10 each.
    model = models.seed_cnn(head=head)
    last = model.get_layer(index=-2)
    kernel, bias = last.get_weights()
    last.set_weights([np.zeros_like(kernel), np.linspace(-3, -1, 10).astype(bias.dtype)])
    p = predict.image_probabilities(model, image_files[0])
    np.testing.assert_allclose(p, 0.1)


def test_logits_head_gets_the_softmax(image_files) -> None:
    model = models.seed_cnn(head="logits")
    scores = model.predict(predict.load_image(image_files[0])[None] / 255.0, verbose=0)[0]
    p = predict.image_probabilities(model, image_files[0])
    expected = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    np.testing.assert_allclose(p, expected, rtol=1e-5)


def test_one_bad_file_among_many_is_reported_in_place(tmp_path: Path, image_files) -> None:
    model = models.seed_cnn()
    missing = tmp_path / "missing.jpg"
    results = predict.images_probabilities(model, [image_files[0], missing, image_files[2]])
    assert isinstance(results[1], predict.ImageError) and str(missing) in str(results[1])
    assert results[0].shape == (10,) and results[2].shape == (10,)
    with pytest.raises(predict.ImageError, match="no such file"):
        predict.image_probabilities(model, missing)


# --- top_k ------------------------------------------------------------------------


def test_top_k_orders_by_probability() -> None:
    p = np.array([0.05, 0.3, 0.05, 0.4, 0.0, 0.1, 0.0, 0.05, 0.05, 0.0])
    assert predict.top_k(p) == [("cat", 0.4), ("automobile", 0.3), ("dog", 0.1)]
    assert [name for name, _ in predict.top_k(p, k=10)][:3] == ["cat", "automobile", "dog"]
    assert len(predict.top_k(p, k=50)) == 10
    ties = predict.top_k(p, k=7)[3:]
    assert [name for name, _ in ties] == ["airplane", "bird", "horse", "ship"]  # label order
    assert predict.top_k(np.array([0.2, 0.8]), 1, ["no", "yes"]) == [("yes", 0.8)]


def test_top_k_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        predict.top_k(np.full(10, 0.1), k=0)
    with pytest.raises(ValueError, match="class names"):
        predict.top_k(np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="shape"):
        predict.top_k(np.full((2, 10), 0.1))


# --- load_model -----------------------------------------------------------------


def test_saved_model_round_trips_with_its_head(tmp_path: Path, image_files) -> None:
    model = models.seed_cnn(head="l2")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = predict.load_model(path)
    np.testing.assert_allclose(predict.image_probabilities(loaded, image_files[1]),
                               predict.image_probabilities(model, image_files[1]), atol=1e-6)


def _model_error(path: Path) -> str:
    return _message(path, predict.load_model, predict.ModelError)


def test_bad_model_paths(tmp_path: Path) -> None:
    assert "does not exist" in _model_error(tmp_path / "runs" / "model.keras")
    assert "is a directory" in _model_error(tmp_path)
    text = tmp_path / "model.keras"
    text.write_text("not a model\n")
    assert "cannot be loaded as a Keras model" in _model_error(text)
    picture = _save(Image.new("RGB", (4, 4)), tmp_path / "cat.png")
    assert "cannot be loaded as a Keras model" in _model_error(picture)


def test_model_that_is_not_for_cifar10_is_refused(tmp_path: Path) -> None:
    small = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    path = tmp_path / "five.keras"
    small.save(path)
    assert "10 classes" in _model_error(path)
    assert predict.ModelError is errors.ModelError
    assert errors.ModelError("x").exit_code == 2
