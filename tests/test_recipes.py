"""The fast recipe of chapter 9 on tiny data: cifar_tutorial.recipes (its real figures come from bench/)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_tutorial import evaluate, fastnet, recipes
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


AIRBENCH94 = {
    "hyp": {"opt": {"train_epochs": 9.9, "batch_size": 1024, "lr": 11.5, "momentum": 0.85,
                    "weight_decay": 0.0153, "bias_scaler": 64.0, "label_smoothing": 0.2,
                    "ema": {"start_epochs": 3, "decay_base": 0.95, "decay_pow": 3.0,
                            "every_n_steps": 5},
                    "whiten_bias_epochs": 3},
            "aug": {"flip": True, "translate": 2},
            "net": {"whitening": {"kernel_size": 2}, "batchnorm_momentum": 0.6,
                    "base_width": 64, "scaling_factor": 1 / 9, "tta_level": 2}},
    # set in its code rather than in hyp
    "lr_schedule": {"start": 0.2, "end": 0.07, "peak": 0.23},
    "whitening_images": 5000,
    "whitening_eps": 5e-4,
    "batchnorm_eps": 1e-12,
    "init_scale": 1 / 3,  # PyTorch's default: uniform within 1 / sqrt(fan_in)
    "cifar_mean": (0.4914, 0.4822, 0.4465),
    "cifar_std": (0.2470, 0.2435, 0.2616),
}
"""airbench94's published settings (KellerJordan/cifar10-airbench, ``airbench94.py``)."""


def test_hyperparameters_follow_airbench94_where_they_mean_to() -> None:
    hyp, ab = recipes.FastHyperparameters(), AIRBENCH94
    opt, net, ema = ab["hyp"]["opt"], ab["hyp"]["net"], ab["hyp"]["opt"]["ema"]
    assert (hyp.lr, hyp.momentum, hyp.weight_decay) == (opt["lr"], opt["momentum"],
                                                        opt["weight_decay"])
    assert (hyp.bias_scaler, hyp.label_smoothing) == (opt["bias_scaler"], opt["label_smoothing"])
    assert hyp.whiten_bias_epochs == opt["whiten_bias_epochs"]
    assert (hyp.lookahead_every, hyp.lookahead_decay_base, hyp.lookahead_decay_pow) == (
        ema["every_n_steps"], ema["decay_base"], ema["decay_pow"])
    assert (hyp.lr_start, hyp.lr_end, hyp.warmup) == tuple(ab["lr_schedule"].values())
    assert hyp.translate == ab["hyp"]["aug"]["translate"]
    w = net["base_width"]
    assert hyp.widths == (w, 4 * w, 4 * w)
    assert (hyp.scaling_factor, hyp.whiten_patch) == (net["scaling_factor"],
                                                      net["whitening"]["kernel_size"])
    assert evaluate.TTA_LEVELS.index(hyp.tta) == net["tta_level"]
    assert (hyp.whiten_images, hyp.whiten_eps) == (ab["whitening_images"], ab["whitening_eps"])
    assert (hyp.bn_eps, hyp.init_scale) == (ab["batchnorm_eps"], ab["init_scale"])
    np.testing.assert_allclose(fastnet.CIFAR10_MEAN / 255, ab["cifar_mean"], atol=1e-4)
    np.testing.assert_allclose(fastnet.CIFAR10_STD / 255, ab["cifar_std"], atol=1e-4)
    # Where the CPU recipe differs on purpose: half the batch, 10 epochs, and Keras'
    # batch-norm momentum (the weight of the old statistics; PyTorch's is one minus it).
    assert (hyp.batch_size, hyp.epochs) == (opt["batch_size"] // 2, 10.0)
    assert hyp.bn_momentum != 1 - net["batchnorm_momentum"]


def test_hyperparameters_refuse_an_unknown_tta_level() -> None:
    with pytest.raises(ValueError, match="tta must be one of none, flip, flip_shift"):
        recipes.FastHyperparameters(tta="mirror")


def test_the_learning_rate_is_a_triangle() -> None:
    schedule = recipes.TriangleSchedule(2.0, total_steps=100, start=0.2, end=0.07, warmup=0.23)
    lr = np.array([float(schedule(s)) for s in range(101)])
    assert lr[0] == pytest.approx(0.4) and lr[100] == pytest.approx(0.14)
    assert lr.argmax() == 23 and lr[23] == pytest.approx(2.0)
    np.testing.assert_allclose(np.diff(lr[:24]), (2.0 - 0.4) / 23, rtol=1e-4)  # straight up
    np.testing.assert_allclose(np.diff(lr[23:]), (0.14 - 2.0) / 77, rtol=1e-4)  # straight down
    # airbench94's triangle is numpy's interpolation through the three corners
    np.testing.assert_allclose(lr, 2.0 * np.interp(np.arange(101), [0, 23, 100], [0.2, 1, 0.07]),
                               rtol=1e-5)
    again = recipes.TriangleSchedule.from_config(schedule.get_config())
    assert float(again(50)) == float(schedule(50))


def test_the_optimizer_follows_the_schedule() -> None:
    x, y = _arrays()
    hyp = recipes.FastHyperparameters(epochs=2, batch_size=16, widths=(8, 8, 8), lookahead=False)
    _, history = recipes.train_fast(x, y, hyp=hyp, precision="float32", verbose=0)
    peak = hyp.lr * hyp.batch_size / (1024 * (1 + 1 / (1 - hyp.momentum)))
    schedule = recipes.TriangleSchedule(peak, 8, hyp.lr_start, hyp.lr_end, hyp.warmup)
    # the lr of each epoch's last step (steps 3 and 7 of 8)
    assert history["lr"] == pytest.approx([float(schedule(3)), float(schedule(7))])
    assert history["lr"][1] < history["lr"][0] < peak


def test_batch_norm_biases_learn_faster_whatever_their_names() -> None:
    net = fastnet.build_fast_net(recipes.FastHyperparameters(widths=(8, 8, 8)), seed=0)
    scales = recipes.bias_gradient_scales(net, 64.0)
    scaled = [v.path for v, s in zip(net.trainable_variables, scales) if s == 64.0]
    assert scaled == [f"block{b}_bn{k}/beta" for b in range(3) for k in range(2)]
    assert set(scales) == {1.0, 64.0}
    # A batch norm under any name is found by its type; a Dense bias is not scaled.
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization(name="anything")(keras.layers.Dense(3)(inputs))
    other = keras.Model(inputs, keras.layers.Dense(2, name="out_bn")(hidden))
    assert recipes.bias_gradient_scales(other, 8.0) == [1.0, 1.0, 1.0, 8.0, 1.0, 1.0]


def test_the_bias_scaler_speeds_up_the_batch_norm_biases_only() -> None:
    x, y = _arrays(32)
    runs = {}
    for scaler in (1.0, 64.0):
        hyp = recipes.FastHyperparameters(epochs=1, batch_size=16, widths=(8, 8, 8),
                                          bias_scaler=scaler, lookahead=False, weight_decay=0.0)
        model, _ = recipes.train_fast(x, y, hyp=hyp, precision="float32", verbose=0, seed=0,
                                      max_steps=1)
        runs[scaler] = {v.path: v.numpy() for v in model.trainable_variables}
    beta = "block0_bn0/beta"
    np.testing.assert_allclose(runs[64.0][beta], 64.0 * runs[1.0][beta], rtol=1e-3, atol=1e-7)
    kernel = "block0_conv0/kernel"  # one step from the same start: the same update
    np.testing.assert_allclose(runs[64.0][kernel], runs[1.0][kernel], rtol=1e-5, atol=1e-6)


def test_lookahead_decays_by_its_base_per_step() -> None:
    hyp = recipes.FastHyperparameters(epochs=1, batch_size=16, widths=(8, 8, 8),
                                      lookahead_every=2, lookahead_decay_base=0.9,
                                      lookahead_decay_pow=2.0)
    net = fastnet.build_fast_net(hyp, seed=0)
    steps = recipes._Steps(net, hyp, num_classes=10, total_steps=10)
    expected = 0.9**2 * (np.arange(11) / 10) ** 2
    np.testing.assert_allclose(steps.alpha_schedule, expected)


def test_train_fast_on_learns_and_evaluates(tiny_data) -> None:
    hyp = recipes.FastHyperparameters(epochs=4, batch_size=30, widths=(16, 32, 32),
                                      lookahead=False, tta="flip")
    model, history = recipes.train_fast_on(tiny_data, hyp, seed=0, verbose=0, precision="float32")
    assert isinstance(history, History)
    assert len(history) == 4 and history["epoch"] == [1, 2, 3, 4]
    assert all(np.isfinite(history["loss"])) and not np.isnan(history.last("val_accuracy"))
    assert history.summary["steps"] == 4 * 3 and history.summary["precision"] == "float32"
    # The returned model takes [0, 1] images like every model of the package.
    ev = evaluate.evaluate(model, tiny_data, "test", tta="flip")
    assert ev.accuracy > 0.3  # ten well-separated synthetic colours; chance is 0.1
    accuracy = history.summary["val_accuracy"]
    assert list(accuracy) == ["none", "flip"]  # the levels up to hyp.tta
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
    assert "val_accuracy" not in history.summary  # no held-out images
    bias = model.get_layer("whiten").bias.numpy()
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


def test_held_out_accuracy_is_named_for_what_the_images_are() -> None:
    x, y = _arrays(48)
    hyp = recipes.FastHyperparameters(epochs=1, batch_size=16, widths=(8, 8, 8), tta="none")
    lines: list[str] = []
    _, history = recipes.train_fast(x[:32], y[:32], x[32:], y[32:], hyp, heldout="test",
                                    precision="float32", log=lines.append)
    assert "test_accuracy" in history.keys and "val_accuracy" not in history.keys
    assert list(history.summary["test_accuracy"]) == ["none"]
    assert history.last("test_accuracy") == pytest.approx(history.summary["test_accuracy"]["none"])
    assert "  test_acc " in lines[-1] and "val_acc" not in lines[-1]
    _, history = recipes.train_fast(x[:32], y[:32], x[32:], y[32:], hyp, precision="float32",
                                    log=lines.append)
    assert "val_accuracy" in history.keys and "  val_acc " in lines[-1]


def test_train_fast_refuses_an_unknown_held_out_name() -> None:
    x, y = _arrays(32)
    with pytest.raises(ValueError, match="heldout must be one of val, test; got 'train'"):
        recipes.train_fast(x, y, heldout="train", verbose=0)
