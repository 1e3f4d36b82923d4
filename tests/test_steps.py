"""The tf.GradientTape steps of chapter 8: cifar_tutorial.steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_tutorial import errors, models, runtime, steps, train


def _batch(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3)).astype("float32"), (np.arange(n) % 10).astype("int32")


def _twins(label_mode: str = "sparse") -> tuple[keras.Model, keras.Model]:
    """Two compiled copies of one seed CNN with SGD (its step shows the gradient's scale)."""
    made = []
    for _ in range(2):
        runtime.set_seed(0)
        made.append(train.compile_model(models.seed_cnn(head="logits"), learning_rate=0.05,
                                        optimizer="sgd", label_mode=label_mode))
    return made[0], made[1]


def _string_twins(loss: str) -> tuple[keras.Model, keras.Model]:
    """Two copies of the softmax seed CNN compiled with a loss given by its name."""
    made = []
    for _ in range(2):
        runtime.set_seed(0)
        model = models.seed_cnn()
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, metrics=["accuracy"])
        made.append(model)
    return made[0], made[1]


def _results(metrics: list[keras.metrics.Metric]) -> dict[str, float]:
    return {m.name: float(m.result()) for m in metrics}


def test_label_mode_comes_from_the_compiled_loss_also_given_by_name() -> None:
    assert steps.label_mode_of(_twins("sparse")[0]) == "sparse"
    assert steps.label_mode_of(_twins("onehot")[0]) == "onehot"
    assert steps.label_mode_of(_string_twins("sparse_categorical_crossentropy")[0]) == "sparse"
    assert steps.label_mode_of(_string_twins("categorical_crossentropy")[0]) == "onehot"
    with pytest.raises(errors.UsageError, match="not compiled"):
        steps.label_mode_of(models.seed_cnn())


@pytest.mark.parametrize("loss", ["object", "sparse_categorical_crossentropy"])
def test_per_example_loss_gives_one_value_per_example(loss: str) -> None:
    model = _twins()[0] if loss == "object" else _string_twins(loss)[0]
    x, y = _batch()
    per_example = steps.per_example_loss(model)(y, model(x))
    assert per_example.shape == (12,)
    mean = model.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)["loss"]
    assert float(np.mean(per_example)) == pytest.approx(mean, rel=1e-5)


@pytest.mark.parametrize("build", [_twins, lambda: _string_twins("sparse_categorical_crossentropy")])
def test_train_step_is_the_step_keras_takes(build) -> None:
    ours, theirs = build()
    x, y = _batch()
    before = ours.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    metrics = steps.epoch_metrics()
    loss = steps.make_train_step(ours, metrics)((tf.constant(x), tf.constant(y)))
    theirs.train_on_batch(x, y)
    assert float(loss) == pytest.approx(before["loss"], rel=1e-5)
    assert _results(metrics) == pytest.approx(before, rel=1e-5)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(ours.get_weights(), build()[0].get_weights()))
    assert moved > 1e-4, "the step must change the weights"
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_metrics_accumulate_over_steps_as_fit_logs_them() -> None:
    ours, theirs = _twins()
    x, y = _batch(20, seed=2)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 8, 8 and 4 images
    metrics = steps.epoch_metrics()
    step = steps.make_train_step(ours, metrics)
    for batch in ds:
        step(batch)
    logs = theirs.fit(ds, epochs=1, verbose=0, shuffle=False).history
    assert _results(metrics)["loss"] == pytest.approx(logs["loss"][0], rel=1e-6)
    assert _results(metrics)["accuracy"] == pytest.approx(logs["accuracy"][0])


def test_eval_step_reads_one_hot_labels_from_their_rank() -> None:
    model, _ = _twins("onehot")
    x, y = _batch(20, seed=1)
    onehot = np.eye(10, dtype="float32")[y]
    ds = tf.data.Dataset.from_tensor_slices((x, onehot)).batch(8)
    metrics = steps.epoch_metrics("val_")
    step = steps.make_eval_step(model, metrics)
    for batch in ds:
        step(batch)
    scores = model.evaluate(ds, verbose=0, return_dict=True)
    assert _results(metrics) == pytest.approx(
        {"val_loss": scores["loss"], "val_accuracy": scores["accuracy"]}, rel=1e-6)
    for metric in metrics:
        metric.reset_state()
    assert _results(metrics) == {"val_loss": 0.0, "val_accuracy": 0.0}
