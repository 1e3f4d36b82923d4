"""The fast recipe of chapter 8, on tiny data (its real figures come from bench/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cifar_tutorial import recipes
from cifar_tutorial.evaluate import evaluate


def test_whitening_filters_whiten_patches() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, 8, 8, 3), dtype=np.uint8)
    kernel, eigenvalues = recipes.whitening_filters(images, patch_size=2, eps=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    assert np.all(np.diff(eigenvalues) <= 1e-6)  # largest first
    # Projected on the first 12 filters, patches have unit variance and no correlation.
    x = (images.astype(np.float32) - recipes.CIFAR10_MEAN) / recipes.CIFAR10_STD
    patches = np.stack([x[:, i:7 + i, j:7 + j, :] for i in range(2) for j in range(2)], axis=3)
    patches = patches.reshape(-1, 12).astype(np.float64)
    patches -= patches.mean(axis=0)
    white = patches @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(12), atol=1e-3)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])


def test_augment_epoch_flips_and_shifts() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    mask = np.arange(16) % 2 == 0
    flipped = recipes.augment_epoch(images, mask, np.random.default_rng(1), translate=0)
    np.testing.assert_array_equal(flipped[mask], images[mask][:, :, ::-1])
    np.testing.assert_array_equal(flipped[~mask], images[~mask])
    shifted = recipes.augment_epoch(images, np.zeros(16, bool), np.random.default_rng(1), translate=2)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, images)


def test_fast_net_shapes() -> None:
    model = recipes.build_fast_net((8, 16, 16), precision="float32", seed=0)
    out = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert out.shape == (2, 10) and out.dtype == np.float32


def test_train_fast_on_learns_and_evaluates(tiny_data) -> None:
    model, history = recipes.train_fast_on(
        tiny_data, epochs=4, batch_size=30, seed=0, verbose=0, widths=(16, 32, 32),
        precision="float32", lookahead=False,
    )
    assert len(history) == 4 and history["epoch"] == [1, 2, 3, 4]
    assert all(np.isfinite(history["loss"]))
    assert not np.isnan(history.last("val_accuracy"))
    # The returned model takes [0, 1] images like every model of the package.
    ev = evaluate(model, tiny_data, "test", tta=True)
    assert ev.accuracy > 0.3  # ten well-separated synthetic colours; chance is 0.1


@pytest.mark.parametrize("bias_epochs", [0, 2])
def test_whitening_bias_learns_only_in_its_first_epochs(bias_epochs: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    y = np.arange(64) % 10
    model, history = recipes.train_fast(
        x, y, epochs=2, batch_size=16, widths=(8, 16, 16), precision="float32",
        whiten_bias_epochs=bias_epochs, verbose=0, seed=0,
    )
    assert history["steps"] == 8  # 8 steps: the last is not a multiple of 5 (Lookahead end)
    bias = model.get_layer("whiten").bias.numpy()
    if bias_epochs == 0:
        np.testing.assert_array_equal(bias, np.zeros_like(bias))  # never moved from zero
    else:
        assert np.abs(bias).max() > 0


def test_cli_trains_the_fast_recipe(tiny_folder: Path, tmp_path: Path) -> None:
    from cifar_tutorial import cli

    rc = cli.main(["train", "--model", "fast", "--epochs", "1", "--batch-size", "30",
                   "--data-dir", str(tiny_folder), "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == "fast" and 0.0 <= metrics["test_accuracy"] <= 1.0
    import keras

    reloaded = keras.models.load_model(tmp_path / "model.keras")  # safe mode: no lambdas
    assert reloaded.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 10)


def test_cli_refuses_a_strategy_for_fast(tiny_folder: Path, tmp_path: Path) -> None:
    from cifar_tutorial import cli

    rc = cli.main(["train", "--model", "fast", "--strategy", "mirrored",
                   "--data-dir", str(tiny_folder), "--out", str(tmp_path)])
    assert rc == 2
    assert not (tmp_path / "model.keras").exists()
