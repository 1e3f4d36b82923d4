"""Training with fit and with the GradientTape loop (chapters 7 and 8): cifar_tutorial.train.

Failures come as the package's own exceptions, with a message naming the problem and
the fix, before any work is wasted: bad arguments and unwritable folders are refused
before the first step, and a loss that turns NaN stops training with the last good
weights kept. The command line's side of the same promises is tested in
``test_cli.py``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_tutorial import data, errors, models, runtime, train


def _model(head: str = "softmax", lr: float = 3e-3, label_mode: str = "sparse") -> keras.Model:
    return train.compile_model(models.seed_cnn(head=head), learning_rate=lr, label_mode=label_mode)


@pytest.fixture(scope="module")
def small_data() -> data.CifarData:
    """40 training and 10 validation images built in memory (no files)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 32, 32, 3), dtype=np.uint8)
    y = np.arange(60, dtype=np.int32) % 10
    return data.CifarData(x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:], data.CLASS_NAMES, "memory")


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
    assert not history.stopped_early and history.summary == {}


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
    with pytest.raises(errors.CheckpointError, match="different run"):
        train.train(_model(), tiny_data, epochs=1, batch_size=8, out_dir=tmp_path, verbose=0)


def test_early_stopping_stops_and_restores_the_best_weights(tiny_data) -> None:
    # Validation labels that are all wrong: the better the net learns the training
    # classes, the higher its validation loss, so training must stop early.
    wrong = dataclasses.replace(tiny_data, y_val=(tiny_data.y_val + 1) % 10)
    runtime.set_seed(0)
    model = _model(lr=3e-3)
    h = train.train(model, wrong, epochs=15, batch_size=16, early_stopping=2, verbose=0)
    assert h.stopped_early and len(h) < 15
    best = int(np.argmin(h["val_loss"])) + 1
    assert len(h) == best + 2  # patience 2: two epochs without a better val_loss
    # The model holds the best epoch's weights: those of a run that ends there.
    runtime.set_seed(0)
    short = _model(lr=3e-3)
    train.train(short, wrong, epochs=best, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), short.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_resumed_run_stops_early_where_an_uninterrupted_one_does(tiny_data, tmp_path) -> None:
    wrong = dataclasses.replace(tiny_data, y_val=(tiny_data.y_val + 1) % 10)
    settings = dict(batch_size=16, early_stopping=2, seed=0, verbose=0)
    runtime.set_seed(0)
    whole = train.train(_model(lr=3e-3), wrong, epochs=15, **settings)
    best = int(np.argmin(whole["val_loss"])) + 1
    assert whole.stopped_early and len(whole) == best + 2
    # The same run stopped after its best epoch, then resumed: the new EarlyStopping
    # must count from the best loss so far (its baseline), not from its first epoch.
    runtime.set_seed(0)
    train.train(_model(lr=3e-3), wrong, epochs=best, out_dir=tmp_path, **settings)
    runtime.set_seed(0)
    resumed = train.train(_model(lr=3e-3), wrong, epochs=15, out_dir=tmp_path, **settings)
    assert resumed.stopped_early and len(resumed) == len(whole)
    np.testing.assert_allclose(resumed["val_loss"], whole["val_loss"], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": -3}, "epochs must be a positive integer"),
        ({"epochs": 1.5}, "epochs must be a positive integer"),
        ({"epochs": 1, "batch_size": 0}, "batch_size must be a positive integer"),
        ({"epochs": 1, "batch_size": 41}, "larger than the training set (40 images)"),
        ({"epochs": 1, "loop": "magic"}, "loop must be 'fit' or 'custom'"),
    ],
)
def test_train_refuses_bad_arguments_before_training(
    small_data, tmp_path: Path, kwargs: dict, fragment: str
) -> None:
    runtime.set_seed(0)
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(errors.UsageError) as info:
        train.train(model, small_data, out_dir=tmp_path / "out", verbose=0, **kwargs)
    assert fragment in str(info.value)
    assert not (tmp_path / "out" / train.CHECKPOINT_DIR).exists()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_train_needs_a_compiled_model(small_data) -> None:
    with pytest.raises(errors.UsageError, match="not compiled: call compile_model first"):
        train.train(models.seed_cnn(), small_data, epochs=1)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: train.compile_model(models.seed_cnn(), label_smoothing=0.1), "label smoothing"),
        (lambda: train.compile_model(models.seed_cnn(), label_mode="soft"), "label_mode"),
        (lambda: train.compile_model(models.seed_cnn(), learning_rate=0), "learning_rate must be positive"),
        (lambda: train.compile_model(models.seed_cnn(), optimizer="adagrad"), "choose adam, adamw or sgd"),
    ],
)
def test_bad_compile_settings_are_refused(build, fragment: str) -> None:
    with pytest.raises(errors.UsageError) as info:
        build()
    assert fragment in str(info.value)


def test_train_refuses_an_unwritable_output_folder_before_training(small_data, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a regular file")
    runtime.set_seed(0)
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    start = time.perf_counter()
    with pytest.raises(errors.OutputError) as info:
        train.train(model, small_data, epochs=50, batch_size=8, out_dir=tmp_path / "file" / "out", verbose=0)
    assert "cannot write to output folder" in str(info.value) and "file" in str(info.value)
    assert time.perf_counter() - start < 5  # nothing trained
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_data, tmp_path: Path, loop: str) -> None:
    out = tmp_path / "out"
    runtime.set_seed(0)
    model = _model(lr=1e-3)
    train.train(model, small_data, epochs=1, batch_size=8, loop=loop, out_dir=out, verbose=0)
    good = [w.copy() for w in model.get_weights()]

    train.compile_model(model, learning_rate=1e3)  # far too high: the loss explodes
    with pytest.raises(train.TrainingDiverged) as info:
        train.train(model, small_data, epochs=4, batch_size=8, loop=loop, out_dir=out, verbose=0)
    message = str(info.value)
    assert info.value.epoch == 2
    assert "epoch 2" in message and "learning rate (1000)" in message and "10x smaller" in message
    assert "epoch 1" in message and str(out / train.CHECKPOINT_DIR) in message

    state = json.loads((out / train.CHECKPOINT_DIR / "state.json").read_text())
    assert state["epochs_done"] == 1 and len(state["history"]["records"]) == 1
    for a, b in zip(good, model.get_weights()):  # the model holds the last good weights again
        np.testing.assert_array_equal(a, b)
    fresh = models.seed_cnn()
    fresh.load_weights(out / train.CHECKPOINT_DIR / state["weights"], skip_mismatch=True)
    for a, b in zip(good, fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in fresh.get_weights())


def test_nan_in_the_first_epoch_says_nothing_was_kept(small_data, tmp_path: Path) -> None:
    runtime.set_seed(0)
    model = _model(lr=1e3)
    with pytest.raises(train.TrainingDiverged) as info:
        train.train(model, small_data, epochs=2, batch_size=8, out_dir=tmp_path / "out", verbose=0)
    assert info.value.epoch == 1
    assert "epoch 1" in str(info.value) and "No epoch had finished" in str(info.value)
    assert not (tmp_path / "out" / train.CHECKPOINT_DIR / "state.json").exists()


def test_plain_keras_and_package_train_alike(tiny_data) -> None:
    """Chapter 7: keras.Sequential + compile + fit is models.seed_cnn + train.train."""
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
    logs = plain.fit(tiny_data.dataset("train", 16, seed=3, epoch=0),
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


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_model_compiled_with_a_string_loss_trains_in_both_loops(tiny_data, loop: str) -> None:
    runtime.set_seed(0)
    named = models.seed_cnn()
    named.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    by_name = train.train(named, tiny_data, epochs=2, batch_size=16, loop=loop, verbose=0)
    runtime.set_seed(0)
    by_object = train.train(_model(), tiny_data, epochs=2, batch_size=16, loop=loop, verbose=0)
    assert by_name["loss"][1] < by_name["loss"][0]
    for key in train.METRICS:
        np.testing.assert_allclose(by_name[key], by_object[key], rtol=1e-6)


def test_every_epoch_draws_a_new_order_and_new_augmentation(tiny_data) -> None:
    aug = data.flip_and_translate()

    def first_batch(ds) -> np.ndarray:
        return next(iter(ds.as_numpy_iterator()))[0]

    plain = tiny_data.dataset("train", 8, seed=4, augment=aug)
    passes = [np.concatenate([x for x, _ in plain.as_numpy_iterator()]) for _ in range(2)]
    assert passes[0].shape == passes[1].shape and not np.array_equal(passes[0], passes[1])
    again = tiny_data.dataset("train", 8, seed=4, augment=aug)  # the same seed, the same passes
    np.testing.assert_array_equal(first_batch(again), passes[0][:8])
    # What train.train feeds fit: epoch e's batches depend on the seed and e alone.
    chained = list(tiny_data.dataset("train", 8, seed=4, augment=aug, epoch=range(1, 3)))
    steps = len(tiny_data.dataset("train", 8, seed=4, epoch=1))
    assert len(chained) == 2 * steps and steps == len(tiny_data.y_train) // 8 + 1
    np.testing.assert_array_equal(
        chained[steps][0], first_batch(tiny_data.dataset("train", 8, seed=4, augment=aug, epoch=2)))
    assert not np.array_equal(chained[0][0], chained[steps][0])


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    tiny_data, tmp_path: Path, loop: str
) -> None:
    kwargs = dict(batch_size=16, loop=loop, seed=5, augment=data.flip_and_translate(), verbose=0)
    runtime.set_seed(5)
    straight = _model()
    whole = train.train(straight, tiny_data, epochs=3, **kwargs)
    runtime.set_seed(5)
    train.train(_model(), tiny_data, epochs=1, out_dir=tmp_path, **kwargs)
    runtime.set_seed(5)
    resumed = _model()
    parts = train.train(resumed, tiny_data, epochs=3, out_dir=tmp_path, **kwargs)
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in parts.records]
    assert timeless == [{k: v for k, v in r.items() if k != "seconds"} for r in whole.records]
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    csv = (tmp_path / "history.csv").read_text().splitlines()  # Keras' CSVLogger, appended to
    assert len(csv) == 4 and csv[0].startswith("epoch") and csv[-1].startswith("2,")


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_the_callers_callbacks_are_called_in_both_loops(tiny_data, loop: str) -> None:
    seen: list[tuple[int, list[str]]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((epoch, sorted(logs))))
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2 if epoch else lr)
    runtime.set_seed(0)
    h = train.train(_model(lr=1e-3), tiny_data, epochs=2, batch_size=16, loop=loop,
                    callbacks=[record, halve], verbose=0)
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert set(train.METRICS) <= set(seen[0][1])
    assert h["lr"] == pytest.approx([1e-3, 5e-4])
