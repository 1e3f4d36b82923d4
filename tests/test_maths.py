"""The NumPy references of chapters 2 and 3, checked by hand and against Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_tutorial import maths

Z = np.array([[2.0, 1.0, 0.1], [-1.0, 0.5, 3.0], [0.0, 0.0, 0.0]])


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


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        maths.categorical_crossentropy(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="do not match"):
        maths.sparse_categorical_crossentropy(np.array([0, 1]), np.ones((3, 4)) / 4)
