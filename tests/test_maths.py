"""The NumPy references of chapters 2 and 3, checked by hand and against Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_tutorial import maths

Z = np.array([[2.0, 1.0, 0.1], [-1.0, 0.5, 3.0], [0.0, 0.0, 0.0]])
SCORES = np.array([[2.0, -1.0, 0.5, 3.0], [-0.5, 1.5, -2.0, 0.25], [0.1, 0.2, 0.3, 0.4]])
LABELS = np.array([2, 1, 0])


def test_softmax_by_hand() -> None:
    e = np.exp([2.0, 1.0, 0.1])
    np.testing.assert_allclose(maths.softmax([2.0, 1.0, 0.1]), e / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(maths.softmax([0.0, 0.0]), [0.5, 0.5])


def test_softmax_is_stable_and_a_distribution() -> None:
    big = np.array([1000.0, 999.0, -1000.0])
    p = maths.softmax(big)
    assert np.all(np.isfinite(p))
    assert maths.is_distribution(p)
    np.testing.assert_allclose(p[:2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])


def test_softmax_matches_keras() -> None:
    ours = maths.softmax(Z)
    theirs = keras.ops.convert_to_numpy(keras.ops.softmax(Z.astype("float32"), axis=-1))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_softmax_base_is_temperature_scaling() -> None:
    for b in (2.0, np.e, 10.0):
        np.testing.assert_allclose(
            maths.softmax_base(Z, b), maths.temperature_softmax(Z, 1 / np.log(b)), rtol=1e-12
        )
    np.testing.assert_allclose(maths.softmax_base(Z, np.e), maths.softmax(Z), rtol=1e-12)
    # base 2 by hand: 2**z / sum 2**z
    z = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(maths.softmax_base(z, 2.0), np.array([2, 4, 8]) / 14)
    with pytest.raises(ValueError, match="base"):
        maths.softmax_base(z, 1.0)


def test_l2_normalize_squares_sum_to_one_not_values() -> None:
    v = np.array([3.0, 4.0])
    out = maths.l2_normalize(v)
    np.testing.assert_allclose(out, [0.6, 0.8])
    assert np.isclose(np.sum(out**2), 1.0)
    assert not np.isclose(np.sum(out), 1.0)  # 1.4: not a distribution
    assert not maths.is_distribution(out)
    theirs = keras.ops.convert_to_numpy(keras.ops.normalize(Z.astype("float32"), order=2))
    np.testing.assert_allclose(maths.l2_normalize(Z[:2]), theirs[:2], atol=1e-6)


def test_l1_normalize_of_relu_is_distribution() -> None:
    v = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(maths.l1_normalize(v), [1 / 6, -2 / 6, 3 / 6])
    assert not maths.is_distribution(maths.l1_normalize(v))
    r = maths.l1_normalize(np.maximum(v, 0))
    np.testing.assert_allclose(r, [0.25, 0.0, 0.75])
    assert maths.is_distribution(r)


def test_one_hot() -> None:
    np.testing.assert_array_equal(maths.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError):
        maths.one_hot([3], 3)


def test_crossentropy_by_hand() -> None:
    p = np.array([0.0, 1.0, 0.0])
    q = np.array([0.2, 0.7, 0.1])
    assert np.isclose(maths.categorical_crossentropy(p, q), -np.log(0.7))
    soft = np.array([0.5, 0.5, 0.0])
    assert np.isclose(maths.categorical_crossentropy(soft, q), -(0.5 * np.log(0.2) + 0.5 * np.log(0.7)))
    assert np.isclose(maths.sparse_categorical_crossentropy(np.array(1), q), -np.log(0.7))


def test_crossentropy_log_zero_is_clipped() -> None:
    p = np.array([1.0, 0.0])
    q = np.array([0.0, 1.0])
    assert np.isinf(maths.categorical_crossentropy(p, q, epsilon=0))
    assert np.isclose(maths.categorical_crossentropy(p, q), -np.log(1e-7))


def test_crossentropies_match_keras() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 10))
    labels = rng.integers(0, 10, size=8)
    q = maths.softmax(logits)
    onehot = maths.one_hot(labels, 10)
    cce = keras.losses.CategoricalCrossentropy(reduction=None)
    scce = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    scce_logits = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    f32 = lambda a: a.astype("float32")  # noqa: E731
    np.testing.assert_allclose(
        maths.categorical_crossentropy(onehot, q),
        keras.ops.convert_to_numpy(cce(f32(onehot), f32(q))), rtol=1e-5)
    np.testing.assert_allclose(
        maths.sparse_categorical_crossentropy(labels, q),
        keras.ops.convert_to_numpy(scce(labels, f32(q))), rtol=1e-5)
    np.testing.assert_allclose(
        maths.crossentropy_from_logits(labels, logits),
        keras.ops.convert_to_numpy(scce_logits(labels, f32(logits))), rtol=1e-5)
    np.testing.assert_allclose(
        maths.crossentropy_from_logits(labels, logits),
        maths.sparse_categorical_crossentropy(labels, q), rtol=1e-9)


def test_from_logits_survives_extreme_scores() -> None:
    logits = np.array([[0.0, 200.0]])
    exact = maths.crossentropy_from_logits(np.array([0]), logits)
    np.testing.assert_allclose(exact, [200.0])
    with np.errstate(over="ignore"):
        naive = np.float32(np.exp(np.float32(0)) / np.sum(np.exp(logits.astype(np.float32))))
    assert naive == 0.0  # the probability underflows, its log would be -inf
    # In float32 the probability of the third class is exactly 0: only clipping saves -log q.
    z = np.array([[50.0, 0.0, -100.0]])
    assert maths.crossentropy_from_logits([2], z)[0] == pytest.approx(150.0)
    q32 = maths.softmax(z).astype(np.float32)
    assert q32[0, 2] == 0.0
    assert maths.sparse_categorical_crossentropy([2], q32)[0] == pytest.approx(-np.log(1e-7))
    assert np.isinf(maths.sparse_categorical_crossentropy([2], q32, epsilon=0)[0])


def test_crossentropy_worked_example_of_chapter_2() -> None:
    q = np.array([0.7, 0.2, 0.1])
    assert maths.categorical_crossentropy(maths.one_hot(0, 3), q) == pytest.approx(-np.log(0.7))
    soft = np.array([0.5, 0.5, 0.0])
    h = maths.categorical_crossentropy(soft, q)
    entropy = maths.categorical_crossentropy(soft, soft, epsilon=0)
    kl = np.sum(soft[:2] * np.log(soft[:2] / q[:2]))
    assert h == pytest.approx(entropy + kl)  # cross-entropy = entropy + KL divergence
    assert entropy == pytest.approx(np.log(2))


def test_logsumexp_by_hand_and_without_overflow() -> None:
    np.testing.assert_allclose(maths.logsumexp([0.0, 0.0]), np.log(2))
    np.testing.assert_allclose(maths.logsumexp(Z), np.log(np.exp(Z).sum(axis=-1)), rtol=1e-12)
    np.testing.assert_allclose(maths.logsumexp([1000.0, 1000.0]), 1000 + np.log(2))
    np.testing.assert_allclose(maths.logsumexp(Z.T, axis=0), maths.logsumexp(Z), rtol=1e-12)


def test_logsumexp_of_a_row_of_minus_infinity_is_minus_infinity() -> None:
    """As scipy.special.logsumexp: log(0 + 0) = -inf, not NaN, and no warning."""
    rows = np.array([[-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 0.0], [np.inf, 0.0, 1.0]])
    with np.errstate(all="raise"):
        out = maths.logsumexp(rows)
    assert out[0] == -np.inf
    assert out[1] == pytest.approx(np.log(2))
    assert out[2] == np.inf
    assert np.isneginf(maths.logsumexp([-np.inf]))


def test_crossentropy_from_logits_at_minus_infinity() -> None:
    # The true class at -inf has probability 0: infinite loss. A row that is all -inf
    # is no distribution at all: NaN, as scipy.special.log_softmax gives.
    z = np.array([[-np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]])
    with np.errstate(all="raise"):
        loss = maths.crossentropy_from_logits([0, 2, 1], z)
    assert loss[0] == np.inf
    assert loss[1] == pytest.approx(np.log(1 + np.e) - 1)
    assert np.isnan(loss[2])


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        maths.categorical_crossentropy(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="do not match"):
        maths.sparse_categorical_crossentropy(np.array([0, 1]), np.ones((3, 4)) / 4)


# --------------------------------------------------------------------------- Keras on heads


def test_keras_probability_crossentropy_matches_sparse_keras_on_l2_outputs() -> None:
    q = maths.l2_normalize(SCORES)
    assert not maths.is_distribution(q)
    theirs = keras.losses.SparseCategoricalCrossentropy(reduction=None)(
        LABELS, q.astype("float32")
    )
    ours = maths.keras_probability_crossentropy(LABELS, q, sparse=True)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs), rtol=1e-5)
    # Not -log q[label]: Keras clips, then divides by the sum.
    naive = -np.log(q[np.arange(3), LABELS])
    assert not np.allclose(ours, naive, rtol=1e-3)


def test_keras_probability_crossentropy_matches_categorical_keras_on_l2_outputs() -> None:
    q = maths.l2_normalize(SCORES)
    theirs = keras.losses.CategoricalCrossentropy(reduction=None)(
        maths.one_hot(LABELS, 4).astype("float32"), q.astype("float32")
    )
    ours = maths.keras_probability_crossentropy(LABELS, q, sparse=False)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs), rtol=1e-5)
    # The two Keras losses disagree on vectors that are not distributions ...
    assert not np.allclose(ours, maths.keras_probability_crossentropy(LABELS, q), rtol=1e-3)


def test_keras_probability_crossentropy_is_plain_crossentropy_on_distributions() -> None:
    p = maths.softmax(SCORES)
    expected = maths.sparse_categorical_crossentropy(LABELS, p)
    for sparse in (True, False):
        np.testing.assert_allclose(
            maths.keras_probability_crossentropy(LABELS, p, sparse=sparse), expected, rtol=1e-9
        )


def test_keras_probability_crossentropy_rescales_unnormalized_outputs() -> None:
    # Halving every output changes nothing: only the shares count.
    q = np.array([[0.2, 0.6, 0.2]])
    np.testing.assert_allclose(
        maths.keras_probability_crossentropy([1], q / 2), -np.log([0.6]), rtol=1e-9
    )


def test_keras_probability_crossentropy_takes_one_vector_and_one_label() -> None:
    q = maths.l2_normalize(SCORES[0])
    one = maths.keras_probability_crossentropy(2, q)
    assert one.shape == ()
    np.testing.assert_allclose(one, maths.keras_probability_crossentropy(LABELS[:1], q[None])[0])
