"""NumPy reference versions of the functions the chapters explain.

Chapter 2 ("Categorical cross-entropy") builds the losses, chapter 3 ("Output
activations") the output normalizations. Each function works on the last axis, so it
accepts one vector or a batch of them, and is checked against Keras' own ops in the
tests.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

EPSILON = 1e-7
"""Clipping constant for probabilities, the same value Keras uses."""

__all__ = [
    "EPSILON",
    "softmax",
    "softmax_base",
    "temperature_softmax",
    "l2_normalize",
    "l1_normalize",
    "is_distribution",
    "one_hot",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "logsumexp",
    "crossentropy_from_logits",
    "keras_probability_crossentropy",
]


def softmax(z: ArrayLike, axis: int = -1) -> np.ndarray:
    """Softmax, computed stably by subtracting the maximum first.

    ``softmax(z)_i = exp(z_i) / sum_j exp(z_j)``; subtracting ``max(z)`` changes
    nothing mathematically but keeps ``exp`` from overflowing (chapter 3).

    Parameters
    ----------
    z : array_like
        Scores (logits).
    axis : int
        The axis that holds the classes.

    Returns
    -------
    numpy.ndarray
        Non-negative values that sum to one along ``axis``.
    """
    z = np.asarray(z, dtype=np.float64)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_base(z: ArrayLike, base: float, axis: int = -1) -> np.ndarray:
    """Softmax with base ``b`` instead of ``e``: ``b**z_i / sum_j b**z_j``.

    Since ``b**z = exp(z * ln b)``, this is the ordinary softmax at temperature
    ``T = 1 / ln b`` (chapter 3).

    Parameters
    ----------
    z : array_like
        Scores (logits).
    base : float
        The base, greater than 1 (a base in (0, 1) reverses the order of the classes).
    axis : int
        The axis that holds the classes.

    Returns
    -------
    numpy.ndarray
        A probability distribution along ``axis``.

    Raises
    ------
    ValueError
        If ``base`` is not positive or equals 1 (every class would get the same share).
    """
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")
    return softmax(np.asarray(z, dtype=np.float64) * np.log(base), axis=axis)


def temperature_softmax(z: ArrayLike, temperature: float, axis: int = -1) -> np.ndarray:
    """Softmax of ``z / T``: flatter for ``T > 1``, sharper for ``T < 1`` (chapter 3).

    Parameters
    ----------
    z : array_like
        Scores (logits).
    temperature : float
        The temperature ``T > 0``.
    axis : int
        The axis that holds the classes.

    Returns
    -------
    numpy.ndarray
        A probability distribution along ``axis``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(np.asarray(z, dtype=np.float64) / temperature, axis=axis)


def l2_normalize(v: ArrayLike, axis: int = -1) -> np.ndarray:
    """Divide by the Euclidean norm: the result has unit length, its squares sum to 1.

    Its values do not sum to one, and may be negative: this is not a probability
    distribution, whatever the seed article says (chapter 3).

    Parameters
    ----------
    v : array_like
        Any vector(s); not all zero.
    axis : int
        The axis to normalize.

    Returns
    -------
    numpy.ndarray
        ``v / ||v||_2``.
    """
    v = np.asarray(v, dtype=np.float64)
    norm = np.sqrt(np.sum(v * v, axis=axis, keepdims=True))
    return v / np.maximum(norm, EPSILON)


def l1_normalize(v: ArrayLike, axis: int = -1) -> np.ndarray:
    """Divide by the sum of absolute values (the L1 norm).

    For non-negative input (for instance after a ReLU) this is a probability
    distribution; for mixed signs the values still do not all lie in [0, 1]
    (chapter 3).

    Parameters
    ----------
    v : array_like
        Any vector(s); not all zero.
    axis : int
        The axis to normalize.

    Returns
    -------
    numpy.ndarray
        ``v / ||v||_1``.
    """
    v = np.asarray(v, dtype=np.float64)
    norm = np.sum(np.abs(v), axis=axis, keepdims=True)
    return v / np.maximum(norm, EPSILON)


def is_distribution(p: ArrayLike, axis: int = -1, atol: float = 1e-6) -> bool:
    """Tell whether every vector along ``axis`` is non-negative and sums to one.

    Parameters
    ----------
    p : array_like
        Candidate probabilities.
    axis : int
        The axis that holds the classes.
    atol : float
        Tolerance for the sum.

    Returns
    -------
    bool
        True if ``p >= 0`` everywhere and each sum is within ``atol`` of 1.
    """
    p = np.asarray(p, dtype=np.float64)
    return bool(np.all(p >= 0) and np.allclose(np.sum(p, axis=axis), 1.0, atol=atol))


def one_hot(labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Turn integer labels into one-hot rows (chapter 2).

    Parameters
    ----------
    labels : array_like of int
        Class indices in ``[0, num_classes)``.
    num_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        Array of shape ``labels.shape + (num_classes,)`` with a single 1 per row.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=np.float64)[labels]


def categorical_crossentropy(
    p: ArrayLike, q: ArrayLike, axis: int = -1, epsilon: float = EPSILON
) -> np.ndarray:
    """Cross-entropy ``H(p, q) = -sum_x p(x) log q(x)`` (chapter 2).

    ``q`` is clipped to ``[epsilon, 1 - epsilon]`` first, as Keras does, so that a
    predicted zero gives a large finite loss instead of ``inf``.

    Parameters
    ----------
    p : array_like
        Target distribution(s), typically one-hot.
    q : array_like
        Predicted distribution(s).
    axis : int
        The axis that holds the classes.
    epsilon : float
        Clipping constant; ``0`` gives the exact (possibly infinite) value.

    Returns
    -------
    numpy.ndarray
        One loss per vector (a scalar array for a single vector).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if epsilon > 0:
        q = np.clip(q, epsilon, 1 - epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        logq = np.log(q)
        # 0 * log(0) counts as 0: only classes with p > 0 contribute.
        terms = np.where(p > 0, p * logq, 0.0)
    return -np.sum(terms, axis=axis)


def sparse_categorical_crossentropy(
    labels: ArrayLike, q: ArrayLike, epsilon: float = EPSILON
) -> np.ndarray:
    """Cross-entropy with integer labels: ``-log q[label]`` (chapter 2).

    The same number as :func:`categorical_crossentropy` with one-hot targets, without
    building the one-hot matrix.

    Parameters
    ----------
    labels : array_like of int
        Class indices, shape ``(n,)`` (or a scalar for one vector).
    q : array_like
        Predicted distributions, shape ``(n, k)`` (or ``(k,)``).
    epsilon : float
        Clipping constant, as in :func:`categorical_crossentropy`.

    Returns
    -------
    numpy.ndarray
        One loss per example.
    """
    labels = np.asarray(labels)
    q = np.asarray(q, dtype=np.float64)
    if q.shape[:-1] != labels.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match predictions {q.shape}")
    if epsilon > 0:
        q = np.clip(q, epsilon, 1 - epsilon)
    picked = np.take_along_axis(q, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    with np.errstate(divide="ignore"):
        return -np.log(picked)


def logsumexp(z: ArrayLike, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(z)))`` without overflow (chapter 2).

    The largest score is subtracted before ``exp`` and added back after ``log``.
    A row whose scores are all ``-inf`` (every ``exp`` is zero) gives ``-inf``,
    ``log 0``, as :func:`scipy.special.logsumexp` does, not NaN.

    Parameters
    ----------
    z : array_like
        Scores.
    axis : int
        Axis to reduce.

    Returns
    -------
    numpy.ndarray
        The reduced values.
    """
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # an all -inf row: nothing to subtract
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(z - m), axis=axis))


def crossentropy_from_logits(labels: ArrayLike, logits: ArrayLike) -> np.ndarray:
    """Sparse cross-entropy computed directly from logits (chapter 2).

    ``-log softmax(z)[y] = logsumexp(z) - z[y]``: no probability is ever formed, so
    no ``log(0)`` can occur. This is what ``from_logits=True`` buys in Keras.

    A true class whose logit is ``-inf`` (probability zero) costs ``inf``. A row of
    logits that are all ``-inf`` describes no distribution: its loss is NaN, as
    with :func:`scipy.special.log_softmax`.

    Parameters
    ----------
    labels : array_like of int
        Class indices, shape ``(n,)``.
    logits : array_like
        Scores, shape ``(n, k)``.

    Returns
    -------
    numpy.ndarray
        One loss per example.
    """
    labels = np.asarray(labels)
    z = np.asarray(logits, dtype=np.float64)
    picked = np.take_along_axis(z, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):  # -inf - (-inf) for an all -inf row
        return logsumexp(z, axis=-1) - picked


def keras_probability_crossentropy(
    labels: ArrayLike, outputs: ArrayLike, sparse: bool = True, epsilon: float = EPSILON
) -> np.ndarray:
    """The cross-entropy Keras computes from outputs it is told are probabilities.

    With ``from_logits=False``, Keras 3 (TensorFlow backend) does not take the
    outputs at face value; it turns them into a distribution first (chapter 3):

    - ``SparseCategoricalCrossentropy`` clips them to ``[epsilon, 1 - epsilon]``,
      takes the log and applies a softmax cross-entropy to it, which amounts to
      dividing the *clipped* values by their sum;
    - ``CategoricalCrossentropy`` divides by the sum first and clips afterwards.

    For a head that is not a distribution (the L2 head) the network therefore
    trains on these rescaled values, not on ``-log`` of its outputs. Outputs of
    Keras' own softmax are an exception: Keras finds the logits behind them and
    computes the loss from those.

    Parameters
    ----------
    labels : array_like of int
        Class indices, shape ``(n,)``.
    outputs : array_like
        The head's outputs, shape ``(n, k)``; any sign.
    sparse : bool
        Mimic the sparse loss (clip, then divide) or the categorical one (divide,
        then clip).
    epsilon : float
        Keras' clipping constant.

    Returns
    -------
    numpy.ndarray
        One loss per example (``inf`` or ``nan`` where the categorical version
        divides by a zero sum).
    """
    labels = np.asarray(labels).astype(np.int64)
    q = np.asarray(outputs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if sparse:
            clipped = np.clip(q, epsilon, 1 - epsilon)
            p = clipped / np.sum(clipped, axis=-1, keepdims=True)
        else:
            p = np.clip(q / np.sum(q, axis=-1, keepdims=True), epsilon, 1 - epsilon)
        picked = np.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
        return -np.log(picked)
