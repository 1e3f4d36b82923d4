"""Helpers added for chapters 3 (output activations) and 6 (custom training loop)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

from cifar_tutorial import maths, plots

SCORES = np.array([[2.0, -1.0, 0.5, 3.0], [-0.5, 1.5, -2.0, 0.25], [0.1, 0.2, 0.3, 0.4]])
LABELS = np.array([2, 1, 0])


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


def test_gradient_norms_figure() -> None:
    fig = plots.gradient_norms({"a": [0.5, 2.0, 1.0], "b": [0.4, 0.3, 3.0]}, clip_norm=1.5,
                               title="norms")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "a" in labels and "b" in labels and "clip norm 1.5" in labels
    # One marker set per run for the steps above the threshold.
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [len(m.get_xdata()) for m in markers] == [1, 1]


def test_gradient_norms_accepts_one_sequence_without_threshold() -> None:
    fig = plots.gradient_norms([1.0, 0.5, 0.25])
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["gradient norm"]


def test_keras_probability_crossentropy_takes_one_vector_and_one_label() -> None:
    q = maths.l2_normalize(SCORES[0])
    one = maths.keras_probability_crossentropy(2, q)
    assert one.shape == ()
    np.testing.assert_allclose(one, maths.keras_probability_crossentropy(LABELS[:1], q[None])[0])


def test_temperature_curves_with_class_names_and_labels() -> None:
    z = np.array([1.0, 2.0, 3.0])
    fig = plots.temperature_curves(z, [2.0, 1.0], class_names=["a", "b", "c"],
                                   labels=["base e^0.5", "base e"])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base e^0.5", "base e"]
    default = plots.temperature_curves(z, [1 / np.log(10.0)]).axes[0]
    assert default.get_legend().get_texts()[0].get_text() == "T = 0.434"
    with pytest.raises(ValueError, match="labels"):
        plots.temperature_curves(z, [1.0, 2.0], labels=["one"])
