"""The fast recipe of chapter 8 on tiny data: cifar_tutorial.recipes (its real figures come from bench/)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cifar_tutorial import evaluate, models, recipes
from cifar_tutorial.records import History


def _arrays(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10


def test_augment_epoch_flips_and_shifts() -> None:
    images, _ = _arrays(16)
    mask = np.arange(16) % 2 == 0
    flipped = recipes.augment_epoch(images, mask, np.random.default_rng(1), translate=0)
    np.testing.assert_array_equal(flipped[mask], images[mask][:, :, ::-1])
    np.testing.assert_array_equal(flipped[~mask], images[~mask])
    shifted = recipes.augment_epoch(images, np.zeros(16, bool), np.random.default_rng(1), translate=2)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, images)
    # Every image is a window of its reflect-padded self.
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for image, window in zip(padded, shifted):
        assert any(np.array_equal(image[dy:dy + 32, dx:dx + 32], window)
                   for dy in range(5) for dx in range(5))


def test_hyperparameters_are_airbench94_on_the_cpu() -> None:
    hyp = recipes.FastHyperparameters()
    assert (hyp.epochs, hyp.batch_size, hyp.widths) == (10.0, 512, (64, 256, 256))
    assert (hyp.lr, hyp.momentum, hyp.weight_decay, hyp.bias_scaler) == (11.5, 0.85, 0.0153, 64.0)
    assert (hyp.label_smoothing, hyp.translate, hyp.whiten_bias_epochs) == (0.2, 2, 3)
    longer = dataclasses.replace(hyp, epochs=12)
    assert longer.epochs == 12 and longer.lr == hyp.lr
    with pytest.raises(dataclasses.FrozenInstanceError):
        hyp.lr = 1.0


def test_unit_input_computes_what_the_net_computes() -> None:
    net = models.build_fast_net((8, 16, 16), precision="float32", seed=0)
    x, _ = _arrays(8)
    on_255 = net.predict(x.astype(np.float32), verbose=0)
    on_unit = recipes.with_unit_input(net).predict(x.astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_array_equal(on_unit, on_255)  # x / 255 * 255 is exact in float32


def test_train_fast_on_learns_and_evaluates(tiny_data) -> None:
    hyp = recipes.FastHyperparameters(epochs=4, batch_size=30, widths=(16, 32, 32), lookahead=False)
    model, history = recipes.train_fast_on(tiny_data, hyp, seed=0, verbose=0, precision="float32")
    assert isinstance(history, History)
    assert len(history) == 4 and history["epoch"] == [1, 2, 3, 4]
    assert all(np.isfinite(history["loss"])) and not np.isnan(history.last("val_accuracy"))
    assert history.summary["steps"] == 4 * 3 and history.summary["precision"] == "float32"
    # The returned model takes [0, 1] images like every model of the package.
    ev = evaluate.evaluate(model, tiny_data, "test", tta="flip")
    assert ev.accuracy > 0.3  # ten well-separated synthetic colours; chance is 0.1
    accuracy = history.summary["accuracy"]
    assert list(accuracy) == ["none", "flip"]
    val_flip = evaluate.evaluate(model, tiny_data, "val", tta="flip").accuracy
    assert accuracy["flip"] == pytest.approx(val_flip)
    assert history.last("val_accuracy") == pytest.approx(accuracy["none"])


@pytest.mark.parametrize("bias_epochs", [0, 2])
def test_whitening_bias_learns_only_in_its_first_epochs(bias_epochs: int) -> None:
    x, y = _arrays()
    hyp = recipes.FastHyperparameters(epochs=2, batch_size=16, widths=(8, 16, 16),
                                      whiten_bias_epochs=bias_epochs)
    model, history = recipes.train_fast(x, y, hyp=hyp, precision="float32", verbose=0, seed=0)
    assert history.summary["steps"] == 8  # 8 steps: the last is not a multiple of 5 (Lookahead end)
    assert "accuracy" not in history.summary  # no held-out images
    bias = model.layers[-1].get_layer("whiten").bias.numpy()
    if bias_epochs == 0:
        np.testing.assert_array_equal(bias, np.zeros_like(bias))  # never moved from zero
    else:
        assert np.abs(bias).max() > 0


def test_same_seed_same_run_with_determinism() -> None:
    x, y = _arrays()
    hyp = recipes.FastHyperparameters(epochs=1, batch_size=16, widths=(8, 8, 8))
    runs = [recipes.train_fast(x, y, x[:16], y[:16], hyp, seed=1, precision="float32",
                               deterministic=True, verbose=0) for _ in range(2)]
    assert runs[0][1]["loss"] == runs[1][1]["loss"]
    for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_train_fast_refuses_an_unknown_tta_level() -> None:
    x, y = _arrays(32)
    with pytest.raises(ValueError, match="tta must be one of none, flip, flip_shift"):
        recipes.train_fast(x, y, tta="mirror", verbose=0)
