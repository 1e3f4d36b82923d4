"""Tests of the helpers that chapters 1, 2 and 4 rely on."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from cifar_tutorial import data, maths, plots

IPython = pytest.importorskip("IPython")


def _fake_shell():
    from IPython.core.formatters import DisplayFormatter

    return SimpleNamespace(display_formatter=DisplayFormatter())


def test_enable_notebook_display_shows_figures_as_png():
    shell = _fake_shell()
    fig = plots.class_balance([1, 2, 3], ["a", "b", "c"])
    before, _ = shell.display_formatter.format(fig)
    assert "image/png" not in before
    assert plots.enable_notebook_display(shell)
    after, _ = shell.display_formatter.format(fig)
    assert after["text/plain"] == "<Figure size 750x320 with 1 Axes>"
    assert base64.b64decode(after["image/png"]).startswith(b"\x89PNG")


def test_enable_notebook_display_keeps_an_existing_formatter():
    shell = _fake_shell()
    png = shell.display_formatter.formatters["image/png"]
    png.for_type(Figure, lambda fig: "mine")
    assert plots.enable_notebook_display(shell)
    assert png.lookup_by_type(Figure)(Figure()) == "mine"


def test_enable_notebook_display_without_ipython_shell():
    # Outside IPython (plain pytest) there is nothing to configure.
    assert plots.enable_notebook_display() is False


def test_class_counts_and_balance_figure():
    counts = data.class_counts(np.array([0, 0, 2, 9]))
    np.testing.assert_array_equal(counts, [2, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    fig = plots.class_balance({"train": counts, "test": counts}, data.CLASS_NAMES)
    assert len(fig.axes) == 1


def test_crossentropy_worked_example_of_chapter_2():
    q = np.array([0.7, 0.2, 0.1])
    assert maths.categorical_crossentropy(maths.one_hot(0, 3), q) == pytest.approx(-np.log(0.7))
    soft = np.array([0.5, 0.5, 0.0])
    h = maths.categorical_crossentropy(soft, q)
    entropy = maths.categorical_crossentropy(soft, soft, epsilon=0)
    kl = np.sum(soft[:2] * np.log(soft[:2] / q[:2]))
    assert h == pytest.approx(entropy + kl)
    assert entropy == pytest.approx(np.log(2))


def test_crossentropy_from_logits_survives_extreme_logits():
    z = np.array([[50.0, 0.0, -100.0]])
    assert maths.crossentropy_from_logits([2], z)[0] == pytest.approx(150.0)
    q32 = maths.softmax(z).astype(np.float32)
    assert q32[0, 2] == 0.0
    assert maths.sparse_categorical_crossentropy([2], q32)[0] == pytest.approx(-np.log(1e-7))
    assert np.isinf(maths.sparse_categorical_crossentropy([2], q32, epsilon=0)[0])


def test_split_validation_of_indices_is_stratified_and_seeded():
    y = np.repeat(np.arange(10), 50)
    idx = np.arange(len(y))
    _, y_tr, v1, y_va = data.split_validation(idx, y, 0.1, seed=0)
    _, _, v2, _ = data.split_validation(idx, y, 0.1, seed=0)
    _, _, v3, _ = data.split_validation(idx, y, 0.1, seed=1)
    np.testing.assert_array_equal(data.class_counts(y_va), [5] * 10)
    np.testing.assert_array_equal(data.class_counts(y_tr), [45] * 10)
    np.testing.assert_array_equal(v1, v2)
    assert not np.array_equal(v1, v3)
