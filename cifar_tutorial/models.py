"""The networks of the book.

- :func:`seed_cnn` -- the seed article's CNN, with the ``Flatten`` it forgot
  (chapter 7), and a choice of output head for the softmax-versus-norm experiment
  (chapter 3);
- :class:`OutputNormalization` -- those heads as one Keras layer;
- :func:`vgg_bn` -- a deeper net with batch normalization and dropout (chapter 9);
- :func:`build_model` -- either of them by name.

The fast recipe's net (chapter 9) lives in :mod:`cifar_tutorial.fastnet`;
:func:`build_model` does not offer it, since without its training images it has no
whitening layer worth the name.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

HEADS: tuple[str, ...] = ("softmax", "softmax_base", "l2", "l1_relu", "logits")
"""Output heads, in the order of chapter 3 (softmax, softmax with base ``b``, division
by the L2 norm, ReLU then division by the L1 norm, and raw logits)."""

MODELS: tuple[str, ...] = ("seed", "vgg_bn")
"""Names accepted by :func:`build_model`."""

__all__ = [
    "HEADS",
    "MODELS",
    "OutputNormalization",
    "outputs_logits",
    "seed_cnn",
    "vgg_bn",
    "build_model",
    "layer_table",
]


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class OutputNormalization(layers.Layer):
    """Turn the last layer's scores into the model's output (chapter 3).

    Parameters
    ----------
    kind : str
        One of :data:`HEADS`:

        ``"softmax"``
            ``exp(z_i) / sum_j exp(z_j)``; always a probability distribution.
        ``"softmax_base"``
            ``b**z_i / sum_j b**z_j``, the softmax at temperature ``1 / ln b``.
        ``"l2"``
            ``z / ||z||_2``, the seed article's proposal: unit length, *not* a
            distribution (values may be negative and need not sum to one).
        ``"l1_relu"``
            ``relu(z) / sum_j relu(z_j)``: a distribution, but a class whose score
            is negative gets exactly zero.
        ``"logits"``
            ``z`` unchanged; train with ``from_logits=True``.
    base : float
        The base ``b`` for ``"softmax_base"``.
    """

    def __init__(self, kind: str = "softmax", base: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if kind not in HEADS:
            raise ValueError(f"unknown output head {kind!r}; choose one of {', '.join(HEADS)}")
        if kind == "softmax_base" and (base <= 0 or base == 1):
            raise ValueError(f"base must be positive and not 1, got {base}")
        self.kind = kind
        self.base = float(base)

    def call(self, z):
        """Apply the head to scores ``z`` of shape ``(batch, classes)``."""
        z = ops.cast(z, "float32")
        if self.kind == "softmax":
            return ops.softmax(z, axis=-1)
        if self.kind == "softmax_base":
            return ops.softmax(z * math.log(self.base), axis=-1)
        if self.kind == "l2":
            return z / ops.maximum(ops.sqrt(ops.sum(z * z, axis=-1, keepdims=True)), 1e-7)
        if self.kind == "l1_relu":
            r = ops.relu(z)
            return r / ops.maximum(ops.sum(r, axis=-1, keepdims=True), 1e-7)
        return z

    def get_config(self) -> dict:
        """Return the layer's configuration for saving."""
        return {**super().get_config(), "kind": self.kind, "base": self.base}


def outputs_logits(model: keras.Model) -> bool:
    """Tell whether ``model`` ends in logits (so losses need ``from_logits=True``).

    Parameters
    ----------
    model : keras.Model
        A model built by this module or :mod:`cifar_tutorial.recipes`.

    Returns
    -------
    bool
        True unless the last layer is a probability-producing head.
    """
    last = model.layers[-1]
    if isinstance(last, OutputNormalization):
        return last.kind == "logits"
    activation = getattr(last, "activation", None)
    return activation is None or getattr(activation, "__name__", "") == "linear"


def seed_cnn(
    head: str = "softmax", base: float = 2.0, num_classes: int = 10, name: str = "seed_cnn"
) -> keras.Sequential:
    """The seed article's CNN, with the ``Flatten`` between convolutions and dense layers.

    Conv 64 3x3 ReLU, max-pool 3, Conv 64 3x3 ReLU, max-pool 3, Flatten, Dense 128
    ReLU, Dense 64 ReLU, Dense 10, then the output head (chapter 7). Without the
    ``Flatten`` the dense layers would act on each of the 2x2 positions separately
    and the output would have shape ``(batch, 2, 2, 10)``.

    Parameters
    ----------
    head : str
        The output head, see :class:`OutputNormalization`.
    base : float
        The base for ``head="softmax_base"``.
    num_classes : int
        Number of classes.
    name : str
        The model's name.

    Returns
    -------
    keras.Sequential
        An uncompiled model for 32x32x3 inputs in ``[0, 1]``.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(pool_size=3),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(pool_size=3),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(64, activation="relu"),
            layers.Dense(num_classes),
            OutputNormalization(head, base=base, name=f"head_{head}"),
        ],
        name=name,
    )


def vgg_bn(
    widths: tuple[int, int, int] = (32, 64, 128),
    dropout: float = 0.3,
    batch_norm: bool = True,
    head: str = "logits",
    num_classes: int = 10,
    name: str = "vgg_bn",
    bn_momentum: float = 0.99,
    base: float = 2.0,
) -> keras.Sequential:
    """A small VGG-style net: three blocks of two 3x3 convolutions (chapter 9).

    Each block is Conv-BN-ReLU, Conv-BN-ReLU, max-pool 2, dropout; a global average
    pool and one dense layer finish it.

    Parameters
    ----------
    widths : tuple of int
        Channels of the three blocks.
    dropout : float
        Dropout rate after each block (0 turns it off).
    batch_norm : bool
        Use batch normalization after each convolution.
    head : str
        The output head, see :class:`OutputNormalization`.
    num_classes : int
        Number of classes.
    name : str
        The model's name.
    bn_momentum : float
        Momentum of the running mean and variance that batch normalization uses at
        inference. Keras' default 0.99 averages over roughly the last 100 steps and
        still holds a fifth of its starting values after an epoch of 157 steps: too
        slow for the six-epoch runs of chapter 9, which use 0.9.
    base : float
        The base for ``head="softmax_base"``.

    Returns
    -------
    keras.Sequential
        An uncompiled model.
    """
    stack: list[layers.Layer] = [keras.Input(shape=(32, 32, 3))]
    for width in widths:
        for _ in range(2):
            stack.append(layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm))
            if batch_norm:
                stack.append(layers.BatchNormalization(momentum=bn_momentum))
            stack.append(layers.ReLU())
        stack.append(layers.MaxPooling2D(2))
        if dropout:
            stack.append(layers.Dropout(dropout))
    stack += [
        layers.GlobalAveragePooling2D(),
        layers.Dense(num_classes),
        OutputNormalization(head, base=base, name=f"head_{head}"),
    ]
    return keras.Sequential(stack, name=name)


def build_model(name: str = "seed", head: str | None = None, **kwargs) -> keras.Model:
    """Build a model by name: ``"seed"`` or ``"vgg_bn"``.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    head : str, optional
        Output head; defaults to ``"softmax"`` for the seed net (as in the article)
        and ``"logits"`` for the others.
    **kwargs
        Passed to the builder.

    Returns
    -------
    keras.Model
        An uncompiled model.
    """
    if name == "seed":
        return seed_cnn(head=head or "softmax", **kwargs)
    if name == "vgg_bn":
        return vgg_bn(head=head or "logits", **kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def layer_table(model: keras.Model) -> str:
    """A plain-text table of layers, output shapes and parameter counts (chapter 9).

    ``model.summary(line_length=...)`` (chapter 7) says the same in a box drawn
    with rules and a footer of totals; this table keeps one short line per layer
    and a total, which a deep network's listing needs to stay readable on a page.

    Parameters
    ----------
    model : keras.Model
        A built model.

    Returns
    -------
    str
        One line per layer and a total.
    """
    rows = [("layer", "output shape", "parameters")]
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape) if shape is not None else "?"
        rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}"))
    rows.append(("total", "", f"{model.count_params():,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
