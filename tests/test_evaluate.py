"""Evaluation (chapter 7) and test-time augmentation (chapter 9): cifar_tutorial.evaluate."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_tutorial import data, evaluate, maths, models, runtime


def test_confusion_matrix_by_hand() -> None:
    cm = evaluate.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate.confusion_matrix(np.array([0, 1]), np.array([0]), 3)


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


def test_dataclasses_holding_arrays_compare_by_identity() -> None:
    """==, which numpy arrays cannot answer for a whole dataclass, is identity."""
    from tests.fixtures import synthetic_data

    probs = np.array([[0.9, 0.1], [0.3, 0.7]])
    ev = evaluate.Evaluation(np.array([0, 1]), np.array([0, 1]), probs, ("a", "b"))
    twin = evaluate.Evaluation(np.array([0, 1]), np.array([0, 1]), probs, ("a", "b"))
    cifar = synthetic_data(20)
    assert ev == ev and ev != twin and cifar == cifar and cifar != synthetic_data(20)
    assert len({ev, twin, cifar}) == 3  # hashable too


# --------------------------------------------------------------------------- test-time augmentation


def _images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize(("tta", "copies"), [("none", 1), ("flip", 2), ("flip_shift", 6)])
def test_tta_views_and_their_weights(tta: str, copies: int) -> None:
    x = _images()
    views = list(evaluate.tta_views(x, tta))
    assert len(views) == copies
    assert sum(w for w, _ in views) == pytest.approx(1.0)
    np.testing.assert_array_equal(views[0][1], x)
    if copies > 1:
        np.testing.assert_array_equal(views[1][1], x[:, :, ::-1])
    if copies == 6:
        weights = [w for w, _ in views]
        assert weights == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
        shifted = views[2][1]  # down-right by one pixel, reflect-padded
        np.testing.assert_array_equal(shifted[:, 1:, 1:], x[:, :-1, :-1])
        np.testing.assert_array_equal(shifted[:, 0, 1:], x[:, 1, :-1])
        np.testing.assert_array_equal(views[4][1][:, :-1, :-1], x[:, 1:, 1:])
        np.testing.assert_array_equal(views[5][1], views[4][1][:, :, ::-1])


def test_unknown_tta_level_is_refused() -> None:
    with pytest.raises(ValueError, match="tta must be one of none, flip, flip_shift; got True"):
        list(evaluate.tta_views(_images(), True))
    with pytest.raises(ValueError, match="got 'mirror'"):
        evaluate.predict_logits(models.seed_cnn(head="logits"), _images(), tta="mirror")


def _net(head: str) -> keras.Model:
    runtime.set_seed(0)
    return models.seed_cnn(head=head)


def test_tta_averages_logits() -> None:
    model = _net("logits")
    x = _images()
    plain = model.predict(x.astype("float32") / 255, verbose=0).astype(np.float64)
    mirror = model.predict(x[:, :, ::-1].astype("float32") / 255, verbose=0).astype(np.float64)
    np.testing.assert_allclose(evaluate.predict_logits(model, x), plain, rtol=1e-6)
    np.testing.assert_allclose(evaluate.predict_logits(model, x, tta="flip"), (plain + mirror) / 2,
                               rtol=1e-6)
    probs = evaluate.predict_probabilities(model, x, tta="flip")
    np.testing.assert_allclose(probs, maths.softmax((plain + mirror) / 2), rtol=1e-6)
    assert not np.allclose(probs, (maths.softmax(plain) + maths.softmax(mirror)) / 2, rtol=1e-6)


def test_tta_on_a_softmax_head_is_tta_on_its_logits() -> None:
    # The log-probabilities of a softmax head are its logits minus one number per
    # image, so averaging them gives the softmax of the averaged logits.
    with_head, without = _net("softmax"), _net("logits")
    x = _images()
    for tta in ("flip", "flip_shift"):
        np.testing.assert_allclose(
            evaluate.predict_probabilities(with_head, x, tta=tta),
            evaluate.predict_probabilities(without, x, tta=tta), atol=1e-6)
    np.testing.assert_allclose(evaluate.predict_probabilities(with_head, x),
                               evaluate.predict_probabilities(without, x), atol=1e-6)


def test_probabilities_of_any_head_sum_to_one_with_tta() -> None:
    x = _images()
    for head in ("l2", "l1_relu", "softmax_base"):
        for tta in evaluate.TTA_LEVELS:
            p = evaluate.predict_probabilities(_net(head), x, tta=tta)
            assert maths.is_distribution(p, atol=1e-9), (head, tta)


def test_evaluate_scores_a_split(tiny_data) -> None:
    model = _net("logits")
    ev = evaluate.evaluate(model, tiny_data, "val", tta="flip")
    assert len(ev.y_true) == len(tiny_data.y_val) and ev.class_names == data.CLASS_NAMES
    expected = evaluate.predict_logits(model, tiny_data.x_val, tta="flip").argmax(axis=1)
    np.testing.assert_array_equal(ev.y_pred, expected)
    assert ev.accuracy == pytest.approx(np.mean(expected == tiny_data.y_val))
