"""Calibration: does a confidence of 0.8 mean right four times in five?

Chapter 11 ("Can we trust the classifier?") measures how far a network's top-class
probability is from its accuracy, with a reliability table and the expected
calibration error (ECE), and repairs it with temperature scaling: dividing the
logits by one number ``T`` fitted on the validation split (Guo et al., 2017). That
``T`` is chapter 3's softmax base ``b = e^(1/T)``, chosen from data.

The reliability table and the ECE read probabilities a model already gave (those
of :func:`cifar_tutorial.evaluate.predict_probabilities`, for instance);
temperature scaling works on logits, and its negative log-likelihood goes through
:func:`cifar_tutorial.maths.crossentropy_from_logits`, the book's one definition.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

from cifar_tutorial.maths import crossentropy_from_logits

__all__ = [
    "ReliabilityTable",
    "reliability_table",
    "expected_calibration_error",
    "temperature_nll",
    "fit_temperature",
]


@dataclasses.dataclass(frozen=True, eq=False)
class ReliabilityTable:
    """Counts, mean confidence and accuracy per confidence bin (chapter 11).

    Attributes
    ----------
    edges : numpy.ndarray
        ``bins + 1`` bin edges ``k / bins``; bin ``k`` holds the confidences in
        ``(edges[k], edges[k + 1]]``, and the first bin also holds 0.
    count : numpy.ndarray
        Images per bin (int64).
    confidence : numpy.ndarray
        Mean top-class probability per bin; NaN for an empty bin.
    accuracy : numpy.ndarray
        Share of correct predictions per bin; NaN for an empty bin.
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        """The gap ``accuracy - confidence`` per bin, negative where it is over-confident."""
        return self.accuracy - self.confidence

    def to_text(self, skip_empty: bool = True) -> str:
        """The table as aligned text, one line per bin (at most 45 characters wide).

        Parameters
        ----------
        skip_empty : bool
            Leave out the bins that hold no image.

        Returns
        -------
        str
            A header and one line per bin.
        """
        lines = [f"{'confidence bin':<15}{'images':>8}{'mean conf':>11}{'accuracy':>10}"]
        for k, n in enumerate(self.count):
            if n == 0 and skip_empty:
                continue
            span = f"({self.edges[k]:.2f}, {self.edges[k + 1]:.2f}]"
            lines.append(f"{span:<15}{n:>8d}{self.confidence[k]:>11.3f}{self.accuracy[k]:>10.3f}")
        return "\n".join(lines)


def _checked(probabilities: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be an (n, classes) array, got shape {p.shape}")
    if y.shape != (len(p),):
        raise ValueError(f"labels of shape {y.shape} do not match {len(p)} rows of probabilities")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer classes, got dtype {y.dtype}")
    if len(p) == 0:
        raise ValueError("no predictions: probabilities has no rows")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3) or np.any(p < 0):
        raise ValueError("each row of probabilities must be a distribution (non-negative, "
                         "summing to 1): pass softmax outputs, not logits")
    return p, y.astype(np.int64)


def reliability_table(probabilities: ArrayLike, labels: ArrayLike, bins: int = 15) -> ReliabilityTable:
    """Group predictions by their confidence and compare it with their accuracy (chapter 11).

    The confidence of a prediction is its top-class probability. Bin ``k`` of
    ``bins`` equal-width bins holds the confidences in ``(k / bins, (k + 1) / bins]``;
    the first bin also holds 0. A confidence exactly on an edge therefore goes to the
    bin below it.

    Parameters
    ----------
    probabilities : array_like
        ``(n, classes)`` predicted distributions (rows sum to 1).
    labels : array_like of int
        ``(n,)`` true classes.
    bins : int
        Number of bins.

    Returns
    -------
    ReliabilityTable
        Count, mean confidence and accuracy per bin.

    Raises
    ------
    ValueError
        If the shapes do not match, the rows are not distributions or ``bins < 1``.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive whole number, got {bins}")
    bins = int(bins)
    p, y = _checked(probabilities, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.arange(bins + 1) / bins
    # searchsorted(side="left") gives i with edges[i-1] < c <= edges[i]: bin i - 1.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return ReliabilityTable(edges=edges, count=count, confidence=mean_conf, accuracy=accuracy)


def expected_calibration_error(probabilities: ArrayLike, labels: ArrayLike, bins: int = 15) -> float:
    """The count-weighted mean gap between accuracy and confidence (chapter 11).

    ``ECE = sum_k (n_k / n) |accuracy_k - confidence_k|`` over the bins of
    :func:`reliability_table`; empty bins weigh nothing. A perfectly calibrated
    model scores 0; one that says 0.9 and is right half the time, 0.4.

    Parameters
    ----------
    probabilities : array_like
        ``(n, classes)`` predicted distributions (rows sum to 1).
    labels : array_like of int
        ``(n,)`` true classes.
    bins : int
        Number of equal-width confidence bins.

    Returns
    -------
    float
        The ECE, between 0 and 1.
    """
    table = reliability_table(probabilities, labels, bins)
    full = table.count > 0
    weights = table.count[full] / table.count.sum()
    return float(np.sum(weights * np.abs(table.gap[full])))


def temperature_nll(logits: ArrayLike, labels: ArrayLike, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)`` (chapter 11).

    Parameters
    ----------
    logits : array_like
        ``(n, classes)`` scores (log-probabilities also do: a constant per row
        changes no softmax).
    labels : array_like of int
        ``(n,)`` true classes.
    temperature : float
        ``T > 0``.

    Returns
    -------
    float
        The mean cross-entropy, in nats.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"logits must be (n, classes) and labels (n,); got {z.shape} and {y.shape}")
    return float(np.mean(crossentropy_from_logits(y, z / temperature)))


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    low: float = 1e-3,
    high: float = 1e3,
    tolerance: float = 1e-6,
) -> float:
    """The temperature ``T > 0`` that minimizes the mean NLL of ``softmax(logits / T)`` (chapter 11).

    Fit it on the validation split, never on the test set that will judge it. The
    NLL is a convex function of ``1 / T``, so it has a single minimum on
    ``log T``; a golden-section search on ``log T`` between ``low`` and ``high``
    finds it without derivatives, deterministically. Dividing by ``T`` keeps
    every prediction (the largest logit stays the largest), so accuracy does not
    change; only the confidences do.

    Parameters
    ----------
    logits : array_like
        ``(n, classes)`` scores of the validation images (log-probabilities also do).
    labels : array_like of int
        ``(n,)`` their true classes.
    low, high : float
        The search interval for ``T``: wide, since a barely trained network
        (logits near zero) needs a small ``T``.
    tolerance : float
        Width of the final interval, in ``log T``.

    Returns
    -------
    float
        The fitted temperature: above 1 for an over-confident model, below 1
        for an under-confident one.

    Raises
    ------
    ValueError
        If the inputs do not match or the NLL is not finite.

    Warns
    -----
    UserWarning
        If the minimum lies at an end of ``[low, high]``, which is returned (a
        validation set the model gets entirely right pushes ``T`` towards 0; a
        network at chance level has no best temperature to speak of).
    """
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got low={low}, high={high}")

    def nll(log_t: float) -> float:
        return temperature_nll(logits, labels, math.exp(log_t))

    if not math.isfinite(nll(0.0)):
        raise ValueError("the NLL at T = 1 is not finite: a true class has probability 0 "
                         "(logit -inf); temperature scaling cannot repair that")
    a, b = math.log(low), math.log(high)
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = nll(d)
    log_t = (a + b) / 2
    if log_t - math.log(low) < 10 * tolerance or math.log(high) - log_t < 10 * tolerance:
        warnings.warn(f"the best temperature lies at the end of [{low}, {high}]: the "
                      "logits carry almost no information (an untrained network) or the "
                      "model makes no mistakes on them; widen low/high to search further",
                      stacklevel=2)
    return math.exp(log_t)
