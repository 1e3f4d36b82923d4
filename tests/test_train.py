"""Training with fit and with the GradientTape loop (chapters 6 and 7)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from cifar_tutorial import models, runtime, train


def _model(head: str = "softmax", lr: float = 3e-3, label_mode: str = "sparse") -> keras.Model:
    return train.compile_model(models.seed_cnn(head=head), learning_rate=lr, label_mode=label_mode)


@pytest.fixture(scope="module")
def fitted(tiny_data):
    runtime.set_seed(0)
    model = _model()
    history = train.train(model, tiny_data, epochs=6, batch_size=16, verbose=0)
    return model, history


def test_fit_learns_the_synthetic_classes(fitted, tiny_data) -> None:
    model, history = fitted
    assert len(history) == 6 and history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert set(history.keys) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert history["loss"][-1] < history["loss"][0]
    assert history.last("accuracy") > 0.3  # chance is 0.1


def test_fit_and_custom_loop_agree(tiny_data) -> None:
    histories, weights = {}, {}
    for loop in ("fit", "custom"):
        runtime.set_seed(1)
        model = _model()
        histories[loop] = train.train(model, tiny_data, epochs=2, batch_size=16, loop=loop, seed=1, verbose=0)
        weights[loop] = model.get_weights()
    np.testing.assert_allclose(histories["fit"]["loss"], histories["custom"]["loss"], rtol=1e-4)
    np.testing.assert_allclose(histories["fit"]["val_accuracy"], histories["custom"]["val_accuracy"])
    for a, b in zip(weights["fit"], weights["custom"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("label_mode", ["sparse", "onehot"])
@pytest.mark.parametrize("head", ["logits", "l1_relu"])
def test_label_modes_and_heads_train(tiny_data, label_mode: str, head: str) -> None:
    runtime.set_seed(0)
    model = _model(head=head, label_mode=label_mode)
    assert train.label_mode_of(model) == label_mode
    h = train.train(model, tiny_data, epochs=1, batch_size=32, loop="custom", verbose=0)
    assert np.isfinite(h.last("loss"))


def test_checkpoint_and_resume(tiny_data, tmp_path) -> None:
    runtime.set_seed(2)
    model = _model()
    first = train.train(model, tiny_data, epochs=2, batch_size=16, out_dir=tmp_path, seed=2, verbose=0)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["epochs_done"] == 2 and (tmp_path / "checkpoint" / state["weights"]).exists()
    # Extending the run trains only the missing epochs and keeps the first ones.
    runtime.set_seed(2)
    again = _model()
    longer = train.train(again, tiny_data, epochs=3, batch_size=16, out_dir=tmp_path, seed=2, verbose=0)
    assert len(longer) == 3 and longer.records[:2] == first.records
    assert int(again.optimizer.iterations.numpy()) == 3 * 6


def test_checkpoint_of_another_run_is_refused(tiny_data, tmp_path) -> None:
    train.train(_model(), tiny_data, epochs=1, batch_size=16, out_dir=tmp_path, verbose=0)
    with pytest.raises(train.TrainingError, match="different run"):
        train.train(_model(), tiny_data, epochs=1, batch_size=8, out_dir=tmp_path, verbose=0)


def test_early_stopping_restores_best(tiny_data) -> None:
    runtime.set_seed(0)
    model = _model(lr=0.05)  # too high: validation loss soon stops improving
    h = train.train(model, tiny_data, epochs=15, batch_size=16, early_stopping=2, verbose=0)
    if h.stopped_early:
        assert len(h) < 15
        best = int(np.argmin(h["val_loss"]))
        assert len(h) - 1 - best == 2


def test_bad_arguments_are_refused(tiny_data) -> None:
    with pytest.raises(ValueError, match="epochs"):
        train.train(_model(), tiny_data, epochs=0)
    with pytest.raises(ValueError, match="larger than the training set"):
        train.train(_model(), tiny_data, epochs=1, batch_size=10_000)
    with pytest.raises(ValueError, match="loop"):
        train.train(_model(), tiny_data, epochs=1, loop="magic")
    with pytest.raises(ValueError, match="not compiled"):
        train.train(models.seed_cnn(), tiny_data, epochs=1)
    with pytest.raises(ValueError, match="label smoothing"):
        train.compile_model(models.seed_cnn(), label_smoothing=0.1)


def test_plain_keras_and_package_train_alike(tiny_data) -> None:
    """Chapter 6: keras.Sequential + compile + fit is models.seed_cnn + train.train."""
    runtime.set_seed(3)
    plain = keras.Sequential([
        keras.Input(shape=(32, 32, 3)),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(pool_size=3),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(pool_size=3),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    plain.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    logs = plain.fit(tiny_data.dataset("train", 16, seed=3),
                     validation_data=tiny_data.dataset("val", 16),
                     epochs=1, shuffle=False, verbose=0).history
    runtime.set_seed(3)
    package = train.compile_model(models.seed_cnn(), learning_rate=1e-4)
    history = train.train(package, tiny_data, epochs=1, batch_size=16, seed=3, verbose=0)

    def configs(model: keras.Model) -> list:
        return [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
                for layer in model.layers]

    ours, theirs = configs(plain), configs(package)
    assert ours[:-1] == theirs[:-2]  # all but the last Dense layer
    assert {**ours[-1][1], "activation": "linear"} == theirs[-2][1]
    assert ours[-1][1]["activation"] == "softmax" and package.layers[-1].kind == "softmax"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert logs[key] == [history.records[0][key]], key
    for a, b in zip(plain.get_weights(), package.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
