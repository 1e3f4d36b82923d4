"""Calibration (chapter 11): reliability tables, ECE and temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_tutorial import calibration, maths


def _two_class(confidences, correct) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[c, 1 - c]`` (class 0 predicted) and labels making each row right or wrong."""
    c = np.asarray(confidences, dtype=np.float64)
    probs = np.stack([c, 1 - c], axis=1)
    labels = np.where(np.asarray(correct), 0, 1)
    return probs, labels


def test_confidences_on_an_edge_go_to_the_bin_below() -> None:
    # bins of width 0.1: (0.4, 0.5], (0.5, 0.6], (0.6, 0.7], ..., (0.9, 1.0]
    probs, labels = _two_class([0.5, 0.7, 0.7, 0.75, 1.0], [True, True, False, True, True])
    table = calibration.reliability_table(probs, labels, bins=10)
    np.testing.assert_array_equal(table.count, [0, 0, 0, 0, 1, 0, 2, 1, 0, 1])
    assert table.confidence[6] == pytest.approx(0.7)
    assert table.accuracy[6] == pytest.approx(0.5)
    assert table.accuracy[9] == 1.0
    np.testing.assert_allclose(table.edges, np.arange(11) / 10)


def test_the_first_bin_holds_zero() -> None:
    # a confidence of 0 is no distribution's top probability, but rounding can give
    # ones just below an edge or above 1: they stay inside the table
    probs = np.array([[0.0, 0.0, 1.0 + 1e-12], [0.2, 0.2, 0.6]])
    table = calibration.reliability_table(probs, np.array([2, 0]), bins=5)
    np.testing.assert_array_equal(table.count, [0, 0, 1, 0, 1])
    table1 = calibration.reliability_table(np.array([[1.0, 0.0]]), np.array([0]), bins=1)
    assert table1.count.tolist() == [1]
    # a top probability of exactly 0.2 is the right edge of the first bin, (0, 0.2]
    fifths = np.zeros((1, 10))
    fifths[0, :5] = 0.2
    assert calibration.reliability_table(fifths, np.array([0]), bins=5).count.tolist() == [1, 0, 0, 0, 0]


def test_ece_by_hand_with_empty_bins() -> None:
    probs, labels = _two_class([0.7, 0.7, 1.0, 0.55], [True, False, True, False])
    table = calibration.reliability_table(probs, labels, bins=10)
    empty = table.count == 0
    assert empty.sum() == 7
    assert np.all(np.isnan(table.confidence[empty])) and np.all(np.isnan(table.accuracy[empty]))
    # bin (0.6, 0.7]: 2 images, gap |0.5 - 0.7|; bin (0.9, 1]: gap 0; bin (0.5, 0.6]: |0 - 0.55|
    expected = (2 * 0.2 + 1 * 0.0 + 1 * 0.55) / 4
    assert calibration.expected_calibration_error(probs, labels, bins=10) == pytest.approx(expected)


def test_perfectly_calibrated_predictions_score_zero() -> None:
    probs, labels = _two_class([0.8] * 10 + [0.6] * 5, [True] * 8 + [False] * 2 + [True] * 3 + [False] * 2)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # ten classes: always 0.9 sure and right nine times in ten
    p = np.full((10, 10), 0.1 / 9)
    p[:, 3] = 0.9
    y = np.array([3] * 9 + [4])
    assert calibration.expected_calibration_error(p, y, bins=15) == pytest.approx(0.0, abs=1e-12)


def test_one_bin_is_the_gap_of_the_means() -> None:
    rng = np.random.default_rng(0)
    p = maths.softmax(rng.normal(size=(200, 10)) * 3)
    y = rng.integers(0, 10, 200)
    gap = abs(np.mean(p.argmax(1) == y) - np.mean(p.max(1)))
    assert calibration.expected_calibration_error(p, y, bins=1) == pytest.approx(gap)
    over = calibration.expected_calibration_error(p, y, bins=15)
    assert 0 < over <= 1


def test_table_text_is_narrow() -> None:
    probs, labels = _two_class([0.7, 0.7, 1.0, 0.55], [True, False, True, False])
    text = calibration.reliability_table(probs, labels, bins=10).to_text()
    lines = text.splitlines()
    assert len(lines) == 4 and max(map(len, lines)) <= 80
    assert "(0.60, 0.70]" in lines[2]


@pytest.mark.parametrize("probs, labels, message", [
    (np.ones((3,)), np.zeros(3, int), "(n, classes)"),
    (np.full((3, 2), 0.5), np.zeros(2, int), "do not match"),
    (np.full((3, 2), 0.5), np.zeros(3), "integer"),
    (np.array([[2.0, -1.0]]), np.zeros(1, int), "logits"),
    (np.full((1, 2), 3.0), np.zeros(1, int), "distribution"),
])
def test_bad_input_is_named(probs, labels, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        calibration.expected_calibration_error(probs, labels)


def test_bins_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bins"):
        calibration.reliability_table(np.full((1, 2), 0.5), np.zeros(1, int), bins=0)


def _sampled(temperature: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 10)) * 4.0
    p = maths.temperature_softmax(logits, temperature)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_t: float) -> None:
    logits, labels = _sampled(true_t)
    t = calibration.fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    # it is the minimum: the NLL is higher on either side
    nll = calibration.temperature_nll(logits, labels, t)
    assert nll < calibration.temperature_nll(logits, labels, t * 1.1)
    assert nll < calibration.temperature_nll(logits, labels, t / 1.1)


def test_temperature_scaling_calibrates_and_keeps_the_predictions() -> None:
    logits, labels = _sampled(2.5, seed=1)
    before = calibration.expected_calibration_error(maths.softmax(logits), labels)
    t = calibration.fit_temperature(logits, labels)
    scaled = maths.temperature_softmax(logits, t)
    after = calibration.expected_calibration_error(scaled, labels)
    assert before > 0.1 and after < 0.02
    np.testing.assert_array_equal(scaled.argmax(1), logits.argmax(1))


def test_log_probabilities_give_the_same_temperature() -> None:
    logits, labels = _sampled(2.0, n=5000)
    shifted = logits - maths.logsumexp(logits)[:, None] + 7.0
    assert calibration.fit_temperature(shifted, labels) == pytest.approx(
        calibration.fit_temperature(logits, labels), rel=1e-5)


def test_fit_temperature_warns_of_a_minimum_at_the_edge() -> None:
    logits = np.eye(10)[np.arange(100) % 10] * 50.0
    with pytest.warns(UserWarning, match="end of"):
        t = calibration.fit_temperature(logits, np.arange(100) % 10)
    assert t == pytest.approx(1e-3, rel=1e-4)
    with pytest.raises(ValueError, match="not finite"):
        calibration.fit_temperature(np.array([[0.0, -np.inf]]), np.array([1]))
    with pytest.raises(ValueError, match="positive"):
        calibration.temperature_nll(np.zeros((1, 2)), np.array([0]), 0.0)


def test_reliability_tables_compare_by_identity() -> None:
    probs, labels = _two_class([0.5, 0.7, 0.9], [True, False, True])
    table = calibration.reliability_table(probs, labels, bins=10)
    again = calibration.reliability_table(probs, labels, bins=10)
    assert table == table and table != again and len({table, again}) == 2
