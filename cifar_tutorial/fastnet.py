"""The fast recipe's network and the layers it is made of (chapter 9).

:func:`build_fast_net` builds airbench's network in Keras from a
:class:`~cifar_tutorial.recipes.FastHyperparameters`; :mod:`cifar_tutorial.recipes`
trains it. Its parts:

- :func:`whitening_filters` -- the frozen first layer's filters, computed from
  the covariance of the training images' patches;
- :class:`FusedBatchNorm` -- Keras' ``BatchNormalization``, trained through one
  fused TensorFlow op;
- :func:`gelu_compiled` -- Keras' exact GELU, compiled by XLA.

The net takes images in ``[0, 1]``, like every model of the package; its first
layer standardizes them with the statistics :data:`CIFAR10_MEAN` and
:data:`CIFAR10_STD`. Its custom parts are registered with Keras, so a saved fast
net loads with ``keras.models.load_model`` once this module is imported
(:func:`cifar_tutorial.predict.load_model` imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import layers, ops

if TYPE_CHECKING:
    from cifar_tutorial.recipes import FastHyperparameters

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "PRECISIONS",
    "whitening_filters",
    "FusedBatchNorm",
    "gelu_compiled",
    "build_fast_net",
]

CIFAR10_MEAN = np.array([125.307, 122.950, 113.865], dtype=np.float32)
"""Per-channel mean of the CIFAR-10 training images, on the 0-255 scale."""

CIFAR10_STD = np.array([62.993, 62.089, 66.705], dtype=np.float32)
"""Per-channel standard deviation of the CIFAR-10 training images, on the 0-255 scale."""

PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")
"""The precisions :func:`build_fast_net` builds for."""


def whitening_filters(images: np.ndarray,
                      hyp: FastHyperparameters) -> tuple[np.ndarray, np.ndarray]:
    """Patch-whitening filters from the covariance of image patches (chapter 9).

    The ``p x p x 3`` patches (``p = hyp.whiten_patch``) of the first
    ``hyp.whiten_images`` images, each standardized with :data:`CIFAR10_MEAN` and
    :data:`CIFAR10_STD`, are collected, their covariance is diagonalized, and
    every eigenvector ``v`` with eigenvalue ``l`` gives the filter
    ``v / sqrt(l + hyp.whiten_eps)``; the negated filters are appended so that a
    following GELU keeps both signs.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W, 3)`` uint8 training images.
    hyp : FastHyperparameters
        Gives ``whiten_patch``, ``whiten_images`` and ``whiten_eps``.

    Returns
    -------
    kernel : numpy.ndarray
        float32 Keras conv kernel ``(p, p, 3, 2 * p * p * 3)``.
    eigenvalues : numpy.ndarray
        The eigenvalues, largest first.
    """
    x = (images[: hyp.whiten_images].astype(np.float32) - CIFAR10_MEAN) / CIFAR10_STD
    _, h, w, c = x.shape
    p = hyp.whiten_patch
    # patches ordered (kh, kw, c) like a Keras kernel
    cols = [x[:, i : h - p + 1 + i, j : w - p + 1 + j, :] for i in range(p) for j in range(p)]
    patches = np.stack(cols, axis=3).reshape(-1, p * p * c).astype(np.float64)
    patches -= patches.mean(axis=0)
    cov = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = eigenvectors / np.sqrt(eigenvalues + hyp.whiten_eps)  # columns are filters
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(p, p, c, 2 * p * p * c).astype(np.float32)
    return kernel, eigenvalues.astype(np.float32)


def _uniform(scale: float, seed: int | None) -> keras.initializers.Initializer:
    """Uniform weights of variance ``scale / fan_in``."""
    return keras.initializers.VarianceScaling(scale=scale, mode="fan_in",
                                              distribution="uniform", seed=seed)


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class _DiracInit(keras.initializers.Initializer):
    """The identity on the first ``in_channels`` filters, uniform weights elsewhere.

    The uniform weights have variance ``scale / fan_in``. The default ``scale``
    reads nets saved before it was a setting of the recipe.
    """

    def __init__(self, scale: float = 1.0 / 3.0, seed: int | None = None) -> None:
        self.scale, self.seed = scale, seed

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        kh, kw, cin, cout = shape
        base = _uniform(self.scale, self.seed)(shape, dtype=dtype)
        n = min(cin, cout)
        eye = np.zeros(shape, dtype=np.float32)
        eye[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        mask = np.ones(shape, dtype=np.float32)
        mask[:, :, :, :n] = 0.0
        return (base * ops.convert_to_tensor(mask, dtype=dtype)
                + ops.convert_to_tensor(eye, dtype=dtype))

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class FusedBatchNorm(layers.BatchNormalization):
    """Keras' ``BatchNormalization``, trained through one fused TensorFlow op (chapter 9).

    In training, Keras' layer casts a bfloat16 map to float32 and computes the
    batch's moments and the normalization in about ten separate ops, each of them a
    pass over the whole map, and as many again backwards. This layer computes the
    same thing with TensorFlow's ``FusedBatchNormV3`` op, which reads the map in
    its own dtype, keeps the statistics in float32 and has a fused gradient. The
    weights, the moving averages (updated with the biased batch variance, as Keras
    does) and inference are Keras' own, so a saved model behaves the same either
    way. Masks, renormalization, synchronized statistics and axes other than the
    last fall back to Keras.

    It needs Keras' TensorFlow backend (the package's only one).
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        """Normalize ``inputs``; in training, with the fused op."""
        # renorm and synchronized exist only in some Keras versions: absent means off
        fusable = (training and self.trainable and mask is None
                   and not getattr(self, "renorm", False)
                   and not getattr(self, "synchronized", False)
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
    """The exact GELU, compiled by XLA (chapter 9).

    The same function as ``keras.activations.gelu``; compiled, its forward pass is
    one loop over the map and so is its gradient, where TensorFlow otherwise runs
    half a dozen element-wise ops each way, each a pass over the whole map.
    """
    global _gelu_xla
    if _gelu_xla is None:
        import tensorflow as tf

        _gelu_xla = tf.function(_gelu_compiled_body, jit_compile=True, autograph=False)
    return _gelu_xla(x)


def build_fast_net(
    hyp: FastHyperparameters,
    *,
    whiten_kernel: np.ndarray | None = None,
    num_classes: int = 10,
    precision: str = "float32",
    seed: int | None = None,
) -> keras.Model:
    """Build the airbench-style network of the fast recipe (chapter 9).

    Input: images ``(N, 32, 32, 3)`` in ``[0, 1]``; output: float32 logits
    ``(N, num_classes)``. A ``Normalization`` layer standardizes the pixels with
    the mean :data:`CIFAR10_MEAN` / 255 and the variance (:data:`CIFAR10_STD` /
    255)², the same map as standardizing the 0-255 values with the statistics
    themselves; then come the frozen whitening convolution, three blocks of
    (conv 3x3, max-pool, batch norm, GELU, conv 3x3, batch norm, GELU), a global
    max-pool and a linear head whose logits are multiplied by
    ``hyp.scaling_factor``.

    Parameters
    ----------
    hyp : FastHyperparameters
        Gives the block ``widths``, ``whiten_patch``, ``bn_momentum``, ``bn_eps``,
        ``init_scale``, ``scaling_factor``, ``fused_norm`` (:class:`FusedBatchNorm`
        instead of Keras' ``BatchNormalization``: the same layer, trained faster)
        and ``compiled_gelu`` (:func:`gelu_compiled` instead of Keras' GELU: the
        same function, faster).
    whiten_kernel : numpy.ndarray, optional
        Kernel from :func:`whitening_filters`; if omitted, the whitening layer
        keeps its random initial kernel (frozen all the same).
    num_classes : int
        Number of outputs.
    precision : {"float32", "mixed_bfloat16"}
        Set per layer, not globally; the input normalization and the whitening
        layer stay float32.
    seed : int, optional
        Seed of the weight initializers.

    Returns
    -------
    keras.Model
        The (uncompiled) network; its last layer, ``logits``, is the head.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dtype = precision
    seeds = iter(range(0 if seed is None else seed * 100, 10**9))

    def _seed() -> int | None:
        return None if seed is None else next(seeds)

    def _gelu(name: str, layer_dtype: str = dtype) -> keras.layers.Layer:
        # Named functions, not a lambda, so that saved models load in safe mode.
        gelu = gelu_compiled if hyp.compiled_gelu else "gelu"
        return keras.layers.Activation(gelu, name=name, dtype=layer_dtype)

    p = hyp.whiten_patch
    whiten_filters = 2 * p * p * 3
    if whiten_kernel is not None and whiten_kernel.shape != (p, p, 3, whiten_filters):
        raise ValueError(f"whiten_kernel has shape {whiten_kernel.shape}, not "
                         f"{(p, p, 3, whiten_filters)} (whiten_patch={p})")

    # The normalization and the whitening layer always run in float32: the
    # whitening filters of the small eigenvalues are large differences of
    # neighbouring pixels, and in bfloat16 their outputs carry 10-35% rounding
    # noise. They cost well under 1% of the compute.
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Normalization(
        mean=CIFAR10_MEAN / 255.0, variance=(CIFAR10_STD / 255.0) ** 2, name="normalize",
        dtype="float32",
    )(ops.cast(inputs, "float32"))
    whiten = keras.layers.Conv2D(
        whiten_filters, p, padding="valid", use_bias=True, name="whiten", dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=_seed()),
    )
    x = whiten(x)
    whiten.kernel.trainable = False
    if whiten_kernel is not None:
        whiten.kernel.assign(whiten_kernel)
    x = _gelu(name="whiten_gelu", layer_dtype="float32")(x)

    norm = FusedBatchNorm if hyp.fused_norm else keras.layers.BatchNormalization
    for b, width in enumerate(hyp.widths):
        for k in range(2):
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False, name=f"block{b}_conv{k}", dtype=dtype,
                kernel_initializer=_DiracInit(scale=hyp.init_scale, seed=_seed()),
            )(x)
            if k == 0:
                x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool", dtype=dtype)(x)
            x = norm(momentum=hyp.bn_momentum, epsilon=hyp.bn_eps, scale=False,
                     name=f"block{b}_bn{k}", dtype=dtype)(x)
            x = _gelu(name=f"block{b}_gelu{k}")(x)

    x = keras.layers.GlobalMaxPooling2D(name="global_pool", dtype=dtype)(x)
    x = keras.layers.Dense(num_classes, use_bias=False, name="head", dtype=dtype,
                           kernel_initializer=_uniform(hyp.init_scale, _seed()))(x)
    x = keras.layers.Rescaling(hyp.scaling_factor, name="scale", dtype="float32")(x)
    outputs = keras.layers.Activation("linear", name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="fast_net")
