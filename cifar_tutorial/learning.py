"""How a network learns, in NumPy (chapter 4, "How a network learns").

Chapter 4 derives the gradient of softmax regression, runs gradient descent and
mini-batch SGD, writes the momentum and Adam updates, and backpropagates through
a network with one hidden layer, each first in the chapter's own cells and then
checked against these reference versions. The tests check them in turn against
finite differences, ``tf.GradientTape`` and ``keras.optimizers``.

Weights are NumPy arrays; a batch ``x`` has one flattened image per row and
``y`` holds integer labels. Every loss is the mean cross-entropy over the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from cifar_tutorial.maths import crossentropy_from_logits, one_hot, softmax

__all__ = [
    "softmax_regression",
    "two_layer_network",
    "finite_difference",
    "minibatches",
    "momentum_step",
    "adam_step",
]


def _loss_and_score_gradient(
    z: np.ndarray, y: np.ndarray, dtype: np.dtype
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of the logits ``z`` and its gradient ``(P - Y) / n``.

    The gradient is cast to ``dtype``, so that float32 inputs are not copied to
    float64 when it is multiplied by them.
    """
    loss = float(np.mean(crossentropy_from_logits(y, z)))
    dz = (softmax(z) - one_hot(y, z.shape[1])) / len(z)
    return loss, dz.astype(dtype)


def softmax_regression(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of softmax regression and its gradient (chapter 4).

    The scores are ``z = x @ w + b``. With ``P = softmax(z)`` and one-hot labels
    ``Y``, the gradient with respect to the scores is ``(P - Y) / n`` (chapter 3's
    ``p - y``, averaged over the batch), so ``dL/dw = x.T @ (P - Y) / n`` and
    ``dL/db`` is the sum of the rows of ``(P - Y) / n``.

    Parameters
    ----------
    w : numpy.ndarray
        Weights, shape ``(d, k)``.
    b : numpy.ndarray
        Biases, shape ``(k,)``.
    x : numpy.ndarray
        Inputs, shape ``(n, d)``.
    y : numpy.ndarray
        Integer labels, shape ``(n,)``.

    Returns
    -------
    tuple
        ``(loss, dL/dw, dL/db)``; the gradients have the shapes of ``w`` and ``b``.
    """
    loss, dz = _loss_and_score_gradient(x @ w + b, y, np.result_type(x, w))
    return loss, x.T @ dz, dz.sum(axis=0).astype(b.dtype)


def two_layer_network(
    params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of a network with one ReLU hidden layer (chapter 4).

    Forward: ``a = x @ w1 + b1``, ``h = relu(a)``, ``z = h @ w2 + b2``, mean
    cross-entropy. Backward, by the chain rule from the loss to the input:
    ``dz = (P - Y) / n``, ``dw2 = h.T @ dz``, ``dh = dz @ w2.T``,
    ``da = dh * (a > 0)``, ``dw1 = x.T @ da``; each bias gets the column sums
    of the gradient of its layer's output.

    Parameters
    ----------
    params : dict of numpy.ndarray
        ``w1`` ``(d, m)``, ``b1`` ``(m,)``, ``w2`` ``(m, k)`` and ``b2`` ``(k,)``.
    x, y : numpy.ndarray
        Inputs ``(n, d)`` and integer labels ``(n,)``, as for
        :func:`softmax_regression`.

    Returns
    -------
    tuple
        ``(loss, gradients)``, the gradients under the same keys as ``params``.
    """
    a = x @ params["w1"] + params["b1"]
    h = np.maximum(a, 0)
    z = h @ params["w2"] + params["b2"]
    loss, dz = _loss_and_score_gradient(z, y, z.dtype)
    da = (dz @ params["w2"].T) * (a > 0)
    grads = {"w2": h.T @ dz, "b2": dz.sum(axis=0), "w1": x.T @ da, "b1": da.sum(axis=0)}
    return loss, {k: g.astype(params[k].dtype) for k, g in grads.items()}


def finite_difference(
    f: Callable[[np.ndarray], float], w: np.ndarray, index: tuple[int, ...], h: float = 1e-5
) -> float:
    """Estimate one partial derivative by central differences (chapter 4).

    ``(f(w + h e) - f(w - h e)) / (2 h)``, where ``e`` is 1 at ``index`` and 0
    elsewhere. The error shrinks like ``h**2`` until rounding takes over; use
    float64 weights.

    Parameters
    ----------
    f : callable
        The function, of the whole array ``w``.
    w : numpy.ndarray
        The point; it is left unchanged.
    index : tuple of int
        Which entry of ``w`` to move.
    h : float
        Half the step.

    Returns
    -------
    float
        The estimate of ``df/dw[index]``.
    """
    moved = np.array(w, dtype=np.float64)
    moved[index] += h
    up = f(moved)
    moved[index] -= 2 * h
    down = f(moved)
    return (up - down) / (2 * h)


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield the indices of one epoch's mini-batches, shuffled (chapter 4).

    One epoch visits each of the ``n`` examples exactly once, in a new random
    order, ``batch_size`` at a time; the last batch is smaller when
    ``batch_size`` does not divide ``n``.

    Parameters
    ----------
    n : int
        Number of examples.
    batch_size : int
        Examples per step.
    rng : numpy.random.Generator
        Source of the shuffle.

    Yields
    ------
    numpy.ndarray
        Integer indices of one mini-batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def momentum_step(
    w: np.ndarray, g: np.ndarray, velocity: np.ndarray, lr: float, momentum: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """One step of SGD with momentum, as ``keras.optimizers.SGD`` takes it (chapter 4).

    ``velocity <- momentum * velocity - lr * g``, then ``w <- w + velocity``.
    With ``momentum=0`` this is plain gradient descent.

    Parameters
    ----------
    w, g, velocity : numpy.ndarray
        Weights, their gradient and the velocity (zeros before the first step).
    lr : float
        Learning rate.
    momentum : float
        Share of the previous velocity kept.

    Returns
    -------
    tuple of numpy.ndarray
        The new weights and the new velocity.
    """
    velocity = momentum * velocity - lr * g
    return w + velocity, velocity


def adam_step(
    w: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    t: int,
    lr: float = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam step, as ``keras.optimizers.Adam`` takes it (chapter 4).

    ``m`` and ``v`` are running means of ``g`` and ``g**2``; dividing them by
    ``1 - beta**t`` removes their bias towards the zeros they start from, and
    ``w`` moves by ``lr * m_hat / (sqrt(v_hat) + epsilon_hat)``. Keras, like
    the efficient version in Kingma and Ba's paper, adds ``epsilon`` to
    ``sqrt(v)`` before the bias correction, so that
    ``epsilon_hat = epsilon / sqrt(1 - beta_2**t)``: about 32 times ``epsilon``
    at the first step, tending to ``epsilon``. The difference shows only for
    gradients near ``epsilon`` in size.

    Parameters
    ----------
    w, g : numpy.ndarray
        Weights and their gradient.
    m, v : numpy.ndarray
        Running means of the gradient and of its square (zeros at first).
    t : int
        Number of this step, from 1.
    lr, beta_1, beta_2, epsilon : float
        Learning rate, decay rates of ``m`` and ``v``, and the guard against
        division by zero (Keras' defaults).

    Returns
    -------
    tuple of numpy.ndarray
        The new weights, ``m`` and ``v``.
    """
    if t < 1:
        raise ValueError(f"the step number t counts from 1, got {t}")
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g**2
    m_hat = m / (1 - beta_1**t)
    v_hat = v / (1 - beta_2**t)
    epsilon_hat = epsilon / (1 - beta_2**t) ** 0.5  # a Python float: keeps float32
    return w - lr * m_hat / (np.sqrt(v_hat) + epsilon_hat), m, v
