"""Chapter 4's NumPy training steps against finite differences, the tape and Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_tutorial import learning, maths

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5))
Y = np.array([0, 2, 1, 2, 0, 1])
W = RNG.normal(scale=0.5, size=(5, 3))
B = RNG.normal(scale=0.1, size=3)
PARAMS = {"w1": RNG.normal(scale=0.5, size=(5, 4)), "b1": RNG.normal(scale=0.1, size=4),
          "w2": RNG.normal(scale=0.5, size=(4, 3)), "b2": RNG.normal(scale=0.1, size=3)}


def tape_gradients(params: dict[str, np.ndarray], loss_of) -> tuple[float, dict]:
    """The loss and its gradients by ``tf.GradientTape``, in float64."""
    variables = {k: tf.Variable(v, dtype=tf.float64) for k, v in params.items()}
    with tf.GradientTape() as tape:
        loss = loss_of(variables)
    grads = tape.gradient(loss, variables)
    return float(loss), {k: g.numpy() for k, g in grads.items()}


def tape_loss_of_logits(labels: np.ndarray, logits) -> tf.Tensor:
    """Mean cross-entropy from logits, in the logits' dtype (Keras' losses cast to float32)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def test_softmax_regression_loss_is_the_mean_cross_entropy() -> None:
    loss, _, _ = learning.softmax_regression(W, B, X, Y)
    probabilities = maths.softmax(X @ W + B)
    expected = np.mean(maths.sparse_categorical_crossentropy(Y, probabilities, epsilon=0))
    assert loss == pytest.approx(expected, rel=1e-12)


def test_softmax_regression_gradient_matches_finite_differences() -> None:
    _, dw, db = learning.softmax_regression(W, B, X, Y)
    for index in [(0, 0), (2, 1), (4, 2), (3, 0)]:
        estimate = learning.finite_difference(
            lambda w: learning.softmax_regression(w, B, X, Y)[0], W, index)
        assert estimate == pytest.approx(dw[index], abs=1e-8)
    for j in range(3):
        estimate = learning.finite_difference(
            lambda b: learning.softmax_regression(W, b, X, Y)[0], B, (j,))
        assert estimate == pytest.approx(db[j], abs=1e-8)


def test_softmax_regression_gradient_matches_the_tape() -> None:
    loss, dw, db = learning.softmax_regression(W, B, X, Y)
    tape_loss, grads = tape_gradients(
        {"w": W, "b": B}, lambda v: tape_loss_of_logits(Y, X @ v["w"] + v["b"]))
    assert loss == pytest.approx(tape_loss, rel=1e-12)
    np.testing.assert_allclose(dw, grads["w"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(db, grads["b"], rtol=1e-10, atol=1e-14)


def test_softmax_regression_keeps_float32() -> None:
    _, dw, db = learning.softmax_regression(
        W.astype(np.float32), B.astype(np.float32), X.astype(np.float32), Y)
    assert dw.dtype == np.float32 and db.dtype == np.float32


def test_two_layer_network_matches_the_tape() -> None:
    def forward(v):
        hidden = tf.nn.relu(X @ v["w1"] + v["b1"])
        return tape_loss_of_logits(Y, hidden @ v["w2"] + v["b2"])

    loss, grads = learning.two_layer_network(PARAMS, X, Y)
    tape_loss, expected = tape_gradients(PARAMS, forward)
    assert loss == pytest.approx(tape_loss, rel=1e-12)
    assert set(grads) == set(PARAMS)
    for key in PARAMS:
        assert grads[key].shape == PARAMS[key].shape
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-10, atol=1e-14)


def test_two_layer_network_matches_finite_differences() -> None:
    _, grads = learning.two_layer_network(PARAMS, X, Y)
    for key, index in [("w1", (1, 2)), ("b1", (3,)), ("w2", (0, 1)), ("b2", (2,))]:
        def loss_of(value, key=key):
            return learning.two_layer_network({**PARAMS, key: value}, X, Y)[0]
        estimate = learning.finite_difference(loss_of, PARAMS[key], index)
        assert estimate == pytest.approx(grads[key][index], abs=1e-8)


def test_finite_difference_of_a_cubic() -> None:
    w = np.array([1.0, -2.0])
    estimate = learning.finite_difference(lambda v: float(np.sum(v**3)), w, (1,), h=1e-4)
    assert estimate == pytest.approx(12.0, abs=1e-6)
    assert w.tolist() == [1.0, -2.0]


def test_minibatches_visit_every_example_once() -> None:
    batches = list(learning.minibatches(10, 4, np.random.default_rng(1)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert np.concatenate(batches).tolist() != list(range(10))  # shuffled
    with pytest.raises(ValueError):
        next(learning.minibatches(10, 0, np.random.default_rng(1)))


def keras_steps(optimizer: keras.optimizers.Optimizer, w0: np.ndarray,
                grads: list[np.ndarray]) -> np.ndarray:
    """The weights after ``optimizer`` applied ``grads`` one after the other."""
    variable = keras.Variable(w0)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    return keras.ops.convert_to_numpy(variable)


GRADS = [RNG.normal(size=(4, 3)).astype(np.float32) for _ in range(3)]
W0 = RNG.normal(size=(4, 3)).astype(np.float32)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_momentum_step_matches_keras_sgd(momentum: float) -> None:
    w, velocity = W0.astype(np.float64), np.zeros_like(W0, dtype=np.float64)
    for g in GRADS:
        w, velocity = learning.momentum_step(w, g, velocity, lr=0.1, momentum=momentum)
    theirs = keras_steps(keras.optimizers.SGD(0.1, momentum=momentum), W0, GRADS)
    np.testing.assert_allclose(w, theirs, atol=1e-6)
    plain = W0 - 0.1 * np.sum(GRADS, axis=0)
    assert np.allclose(w, plain, atol=1e-6) == (momentum == 0.0)


def test_adam_step_matches_keras_adam() -> None:
    w = W0.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(GRADS, start=1):
        w, m, v = learning.adam_step(w, g, m, v, t, lr=0.01)
    theirs = keras_steps(keras.optimizers.Adam(0.01), W0, GRADS)
    np.testing.assert_allclose(w, theirs, atol=1e-6)
    assert not np.allclose(w, W0, atol=1e-3)


def test_first_adam_step_moves_each_weight_by_about_lr() -> None:
    g = np.array([1e-3, -5.0, 200.0])
    w, _, _ = learning.adam_step(np.zeros(3), g, np.zeros(3), np.zeros(3), 1, lr=0.01)
    epsilon_hat = 1e-7 / np.sqrt(1 - 0.999)  # Keras adds epsilon before the correction
    np.testing.assert_allclose(w, -0.01 * g / (np.abs(g) + epsilon_hat), rtol=1e-12)
    np.testing.assert_allclose(w, -0.01 * np.sign(g), rtol=1e-2)
    with pytest.raises(ValueError):
        learning.adam_step(np.zeros(3), g, np.zeros(3), np.zeros(3), 0)
