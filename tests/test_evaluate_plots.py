"""Evaluation (chapter 6) and the figures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from cifar_tutorial import evaluate, plots
from cifar_tutorial.train import History


def test_confusion_matrix_by_hand() -> None:
    cm = evaluate.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_evaluation_metrics_and_worst_mistakes() -> None:
    probs = np.array([
        [0.9, 0.1, 0.0],   # true 0, right
        [0.2, 0.7, 0.1],   # true 0, wrong with 0.7
        [0.0, 0.05, 0.95], # true 1, wrong with 0.95
        [0.1, 0.1, 0.8],   # true 2, right
    ])
    ev = evaluate.Evaluation(np.array([0, 0, 1, 2]), probs.argmax(1), probs, ("a", "b", "c"))
    assert ev.accuracy == 0.5
    assert ev.per_class_accuracy == {"a": 0.5, "b": 0.0, "c": 1.0}
    np.testing.assert_array_equal(ev.worst_mistakes(5), [2, 1])
    assert np.isclose(ev.loss, -np.mean(np.log([0.9, 0.2, 0.05, 0.8])))
    d = ev.to_dict()
    assert d["accuracy"] == 0.5 and d["confusion_matrix"][1][2] == 1


def _history() -> History:
    return History([{"epoch": e, "loss": 2.0 / e, "accuracy": 0.1 * e, "val_loss": 2.1 / e,
                     "val_accuracy": 0.09 * e, "lr": 1e-3, "seconds": 1.0} for e in (1, 2, 3)])


def test_history_roundtrip(tmp_path) -> None:
    h = _history()
    json_path, csv_path = h.save(tmp_path)
    assert History.from_dict(__import__("json").loads(json_path.read_text())) == h
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["epoch", "loss", "accuracy"] and len(lines) == 4
    assert h["accuracy"] == [0.1, 0.2, pytest.approx(0.3)]


def test_figures_are_returned() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(5, 32, 32, 3), dtype=np.uint8)
    names = [f"c{i}" for i in range(10)]
    figs = {
        "grid": plots.image_grid(images, [0, 1, 2, 3, 4], names, ncols=3),
        "balance": plots.class_balance({"train": [5] * 10, "test": [1] * 10}, names),
        "curves": plots.training_curves({"a": _history(), "b": _history()}),
        "confusion": plots.confusion_matrix(np.eye(10) * 5, names),
        "mistakes": plots.mistakes(images[:2], [0, 1], [1, 0], [0.9, 0.8], names),
        "heads": plots.output_normalizations(np.array([1.0, -1.0, 2.0]), {"softmax": np.array([0.3, 0.1, 0.6])}),
        "temperature": plots.temperature_curves(np.array([1.0, 2.0, 3.0]), [0.5, 1, 2]),
        "bars": plots.bar_comparison({"x": 0.5, "y": 0.7}, "accuracy"),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
    assert len([ax for ax in figs["grid"].axes if ax.images]) == 5
    assert len(figs["curves"].axes) == 2
    assert len(figs["curves"].axes[0].lines) == 4  # two runs x (train, validation)
    assert figs["mistakes"].axes[0].get_title().startswith("c1 90%")
    with pytest.raises(ValueError):
        plots.image_grid(images[:0], [], names)
