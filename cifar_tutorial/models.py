"""The networks of the book.

- :func:`seed_cnn` -- the seed article's CNN, with the ``Flatten`` it forgot
  (chapter 6), and a choice of output head for the softmax-versus-norm experiment
  (chapter 3);
- :class:`OutputNormalization` -- those heads as one Keras layer;
- :func:`vgg_bn` -- a deeper net with batch normalization and dropout (chapter 8);
- :func:`build_model` -- either of them by name;
- :func:`build_fast_net` -- the fast recipe's airbench-style net (chapter 8), whose
  first layer holds the :func:`whitening_filters` of its training images. It is
  trained by :mod:`cifar_tutorial.recipes`; :func:`build_model` does not offer it,
  since without those images it has no whitening layer worth the name.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
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
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "whitening_filters",
    "FusedBatchNorm",
    "gelu_compiled",
    "build_fast_net",
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
    ReLU, Dense 64 ReLU, Dense 10, then the output head (chapter 6). Without the
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
) -> keras.Sequential:
    """A small VGG-style net: three blocks of two 3x3 convolutions (chapter 8).

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
        slow for the six-epoch runs of chapter 8, which use 0.9.

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
        OutputNormalization(head, name=f"head_{head}"),
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
    """A plain-text table of layers, output shapes and parameter counts (chapter 6).

    Unlike ``model.summary()``, the text does not depend on the terminal's width, so
    notebooks can compare it between runs.

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


# --------------------------------------------------------------------------- fast net

#: Per-channel mean and standard deviation of the CIFAR-10 training images (0-255 scale).
CIFAR10_MEAN = np.array([125.307, 122.950, 113.865], dtype=np.float32)
CIFAR10_STD = np.array([62.993, 62.089, 66.705], dtype=np.float32)


def whitening_filters(
    images: np.ndarray, patch_size: int = 2, eps: float = 5e-4, max_images: int = 5000
) -> tuple[np.ndarray, np.ndarray]:
    """Patch-whitening filters from the covariance of image patches (chapter 8).

    The ``patch_size x patch_size x 3`` patches of the (normalised) images are
    collected, their covariance is diagonalised, and every eigenvector ``v``
    with eigenvalue ``l`` gives the filter ``v / sqrt(l + eps)``; the negated
    filters are appended so that a following GELU keeps both signs.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W, 3)`` uint8 training images.
    patch_size : int
        Height and width of the patches (and of the convolution kernel).
    eps : float
        Added to the eigenvalues before the square root.
    max_images : int
        At most this many (the first) images are used.

    Returns
    -------
    kernel : numpy.ndarray
        float32 Keras conv kernel ``(patch_size, patch_size, 3, 2 * patch_size**2 * 3)``.
    eigenvalues : numpy.ndarray
        The eigenvalues, largest first.
    """
    x = (images[:max_images].astype(np.float32) - CIFAR10_MEAN) / CIFAR10_STD
    n, h, w, c = x.shape
    p = patch_size
    # patches ordered (kh, kw, c) like a Keras kernel
    cols = [x[:, i : h - p + 1 + i, j : w - p + 1 + j, :] for i in range(p) for j in range(p)]
    patches = np.stack(cols, axis=3).reshape(-1, p * p * c).astype(np.float64)
    patches -= patches.mean(axis=0)
    cov = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = eigenvectors / np.sqrt(eigenvalues + eps)  # columns are filters
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(p, p, c, 2 * p * p * c).astype(np.float32)
    return kernel, eigenvalues.astype(np.float32)


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class _DiracInit(keras.initializers.Initializer):
    """Identity on the first ``in_channels`` filters, a base initialiser elsewhere."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        kh, kw, cin, cout = shape
        base = keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=self.seed
        )(shape, dtype=dtype)
        n = min(cin, cout)
        eye = np.zeros(shape, dtype=np.float32)
        eye[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        mask = np.ones(shape, dtype=np.float32)
        mask[:, :, :, :n] = 0.0
        return base * keras.ops.convert_to_tensor(mask, dtype=dtype) + keras.ops.convert_to_tensor(
            eye, dtype=dtype
        )

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class FusedBatchNorm(layers.BatchNormalization):
    """Keras' ``BatchNormalization``, trained through one fused TensorFlow op (chapter 8).

    In training, Keras' layer casts a bfloat16 map to float32 and computes the
    batch's moments and the normalisation in about ten separate ops, each of them a
    pass over the whole map, and as many again backwards. This layer computes the
    same thing with TensorFlow's ``FusedBatchNormV3`` op, which reads the map in
    its own dtype, keeps the statistics in float32 and has a fused gradient. The
    weights, the moving averages (updated with the biased batch variance, as Keras
    does) and inference are Keras' own, so a saved model behaves the same either
    way. Masks, renormalisation and axes other than the last fall back to Keras.
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        """Normalise ``inputs``; in training, with the fused op."""
        fusable = (training and self.trainable and mask is None and not self.renorm
                   and len(inputs.shape) == 4 and self.axis in (-1, 3))
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = (ops.cast(self.gamma, "float32") if self.scale
                 else ops.ones((channels,), "float32"))
        offset = (ops.cast(self.beta, "float32") if self.center
                  else ops.zeros((channels,), "float32"))
        x = ops.cast(inputs, self.compute_dtype)
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=ops.zeros((0,), "float32"),
            variance=ops.zeros((0,), "float32"), epsilon=float(self.epsilon),
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        # The op returns the unbiased batch variance; Keras averages the biased one.
        count = tf.cast(tf.size(x) // channels, "float32")
        variance = variance * (count - 1.0) / count
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        return y


def _gelu_compiled_body(x: Any) -> Any:
    return keras.activations.gelu(x)


_gelu_xla: Any = None  # built on first use, so that importing this module builds no graph


@keras.saving.register_keras_serializable(package="cifar_tutorial")
def gelu_compiled(x: Any) -> Any:
    """The exact GELU, compiled by XLA (chapter 8).

    The same function as ``keras.activations.gelu``; compiled, its forward pass is
    one loop over the map and so is its gradient, where TensorFlow otherwise runs
    half a dozen element-wise ops each way, each a pass over the whole map.
    """
    global _gelu_xla
    if _gelu_xla is None:
        import tensorflow as tf

        _gelu_xla = tf.function(_gelu_compiled_body, jit_compile=True, autograph=False)
    return _gelu_xla(x)


@keras.saving.register_keras_serializable(package="cifar_tutorial")
def gelu_tanh(x: Any) -> Any:
    """GELU with the tanh approximation (cheaper on some CPUs; chapter 8)."""
    return keras.activations.gelu(x, approximate=True)


def build_fast_net(
    widths: tuple[int, int, int] = (64, 256, 256),
    *,
    whiten_kernel: np.ndarray | None = None,
    num_classes: int = 10,
    bn_momentum: float = 0.6,
    scaling_factor: float = 1.0 / 9.0,
    precision: str = "float32",
    seed: int | None = None,
    gelu_approximate: bool = False,
    fused_norm: bool = False,
    compiled_gelu: bool = False,
) -> keras.Model:
    """Build the airbench-style network of the fast recipe (chapter 8).

    Input: uint8 (or float) images ``(N, 32, 32, 3)`` on the 0-255 scale;
    output: float32 logits ``(N, num_classes)``.

    Parameters
    ----------
    widths : tuple of int
        Channels of the three conv blocks.
    whiten_kernel : numpy.ndarray, optional
        Kernel from :func:`whitening_filters`; its shape fixes the first
        layer. If omitted, a 2x2 layer with 24 filters keeps its random init.
    num_classes : int
        Number of outputs.
    bn_momentum : float
        Keras BatchNorm momentum (weight of the old running statistics).
    scaling_factor : float
        The logits are multiplied by this constant.
    precision : str
        ``"float32"`` or ``"mixed_bfloat16"`` (set per layer, not globally;
        the input normalisation and the whitening layer stay float32).
    seed : int, optional
        Seed of the weight initialisers.
    gelu_approximate : bool
        Use the tanh approximation of GELU (not shown to be faster on the
        2-core CPU; the recipe uses the exact GELU).
    fused_norm : bool
        Use :class:`FusedBatchNorm` instead of Keras' ``BatchNormalization``: the
        same layer, trained faster.
    compiled_gelu : bool
        Use :func:`gelu_compiled`, the exact GELU compiled by XLA: the same
        function, faster (ignored with ``gelu_approximate``).

    Returns
    -------
    keras.Model
        The (uncompiled) network.
    """
    if precision not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"unknown precision {precision!r}")
    dtype = precision
    seeds = iter(range(0 if seed is None else seed * 100, 10**9))

    def _seed() -> int | None:
        return None if seed is None else next(seeds)

    def _gelu(name: str, layer_dtype: str = dtype) -> keras.layers.Layer:
        # Named functions, not a lambda, so that saved models load in safe mode.
        exact = gelu_compiled if compiled_gelu else "gelu"
        return keras.layers.Activation(
            gelu_tanh if gelu_approximate else exact, name=name, dtype=layer_dtype
        )

    if whiten_kernel is None:
        whiten_shape = (2, 2, 3, 24)
    else:
        whiten_shape = tuple(whiten_kernel.shape)

    # The normalisation and the whitening layer always run in float32: the
    # whitening filters of the small eigenvalues are large differences of
    # neighbouring pixels, and in bfloat16 their outputs carry 10-35% rounding
    # noise. They cost well under 1% of the compute.
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Normalization(
        mean=CIFAR10_MEAN, variance=CIFAR10_STD**2, name="normalize", dtype="float32"
    )(keras.ops.cast(inputs, "float32"))
    whiten = keras.layers.Conv2D(
        whiten_shape[3],
        whiten_shape[:2],
        padding="valid",
        use_bias=True,
        name="whiten",
        dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=_seed()),
    )
    x = whiten(x)
    whiten.kernel.trainable = False
    if whiten_kernel is not None:
        whiten.kernel.assign(whiten_kernel)
    x = _gelu(name="whiten_gelu", layer_dtype="float32")(x)

    for b, width in enumerate(widths):
        for k in range(2):
            x = keras.layers.Conv2D(
                width,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=_DiracInit(seed=_seed()),
                name=f"block{b}_conv{k}",
                dtype=dtype,
            )(x)
            if k == 0:
                x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool", dtype=dtype)(x)
            norm = FusedBatchNorm if fused_norm else keras.layers.BatchNormalization
            x = norm(
                momentum=bn_momentum,
                epsilon=1e-12,
                scale=False,
                name=f"block{b}_bn{k}",
                dtype=dtype,
            )(x)
            x = _gelu(name=f"block{b}_gelu{k}")(x)

    x = keras.layers.GlobalMaxPooling2D(name="global_pool", dtype=dtype)(x)
    x = keras.layers.Dense(
        num_classes,
        use_bias=False,
        name="head",
        dtype=dtype,
        kernel_initializer=keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=_seed()
        ),
    )(x)
    x = keras.layers.Rescaling(scaling_factor, name="scale", dtype="float32")(x)
    outputs = keras.layers.Activation("linear", name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="fast_net")
