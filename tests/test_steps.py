"""The tf.GradientTape steps of chapter 7: cifar_tutorial.steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_tutorial import models, runtime, steps, train


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


def test_label_mode_of_reads_the_compiled_loss() -> None:
    assert steps.label_mode_of(_twins("sparse")[0]) == "sparse"
    assert steps.label_mode_of(_twins("onehot")[0]) == "onehot"
    with pytest.raises(ValueError, match="not compiled"):
        steps.label_mode_of(models.seed_cnn())


def test_train_step_is_the_step_keras_takes() -> None:
    ours, theirs = _twins()
    x, y = _batch()
    before = ours.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    loss_sum, correct, count = steps.make_train_step(ours)((tf.constant(x), tf.constant(y)))
    theirs.train_on_batch(x, y)
    assert float(count) == len(y)
    assert float(loss_sum) / len(y) == pytest.approx(before["loss"], rel=1e-5)
    assert float(correct) == pytest.approx(before["accuracy"] * len(y))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(ours.get_weights(), _twins()[0].get_weights()))
    assert moved > 1e-4, "the step must change the weights"
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_eval_step_sums_what_evaluate_averages() -> None:
    model, _ = _twins("onehot")
    x, y = _batch(20, seed=1)
    onehot = np.eye(10, dtype="float32")[y]
    ds = tf.data.Dataset.from_tensor_slices((x, onehot)).batch(8)
    step = steps.make_eval_step(model)
    sums = np.sum([[float(v) for v in step(batch)] for batch in ds], axis=0)
    scores = model.evaluate(ds, verbose=0, return_dict=True)
    assert sums[2] == 20
    assert sums[0] / sums[2] == pytest.approx(scores["loss"], rel=1e-5)
    assert sums[1] / sums[2] == pytest.approx(scores["accuracy"])
