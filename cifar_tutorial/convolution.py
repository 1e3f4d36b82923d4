"""Convolutions and pooling in NumPy, as Keras computes them (chapter 6).

Chapter 6 ("Convolutions and pooling") writes these operations in a few lines,
then checks them against ``keras.layers.Conv2D`` and ``keras.layers.MaxPooling2D``
carrying the same weights. The layouts are Keras' own: images ``(batch, height,
width, channels)`` (NHWC) and kernels ``(height, width, in_channels, filters)``
(HWIO).

- :func:`output_size` and :func:`same_padding` -- how large a layer's output is,
  and how TensorFlow splits the zeros of ``padding="same"``;
- :func:`conv2d` and :func:`max_pool2d` -- the two layers themselves;
- :func:`conv2d_params` -- the parameter count of a convolution;
- :func:`compose_convs` and :func:`compose_dense` -- two linear layers in a row are
  one linear layer, which is why hidden layers need a non-linearity;
- :func:`receptive_fields` -- how much of the image each layer of a model sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PADDINGS: tuple[str, ...] = ("valid", "same")
"""The two padding modes of Keras' convolution and pooling layers."""


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """Turn ``3`` or ``(3, 3)`` into ``(3, 3)``, refusing sizes below 1."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_padding(padding: str) -> str:
    padding = padding.lower()
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    return padding


def output_size(size: int, kernel: int, stride: int = 1, padding: str = "valid") -> int:
    """Length of a convolution's or pooling's output along one axis (chapter 6).

    ``"valid"`` keeps only windows that lie inside the input,
    ``floor((size - kernel) / stride) + 1``; ``"same"`` pads with zeros so that
    ``ceil(size / stride)`` windows fit, which is ``size`` for stride 1.

    Parameters
    ----------
    size : int
        Input length (height or width).
    kernel : int
        Window length.
    stride : int
        Step between windows.
    padding : {"valid", "same"}
        Keras' padding mode.

    Returns
    -------
    int
        The output length (0 when a valid window does not fit).
    """
    padding = _check_padding(padding)
    if padding == "same":
        return -(-size // stride)
    return max((size - kernel) // stride + 1, 0)


def same_padding(size: int, kernel: int, stride: int = 1) -> tuple[int, int]:
    """Zeros that ``padding="same"`` adds before and after one axis (chapter 6).

    TensorFlow pads just enough for ``ceil(size / stride)`` windows and puts the
    odd zero, if any, *after* the input: a 3-wide window at stride 2 on 32
    pixels gets ``(0, 1)``, not ``(1, 1)``.

    Parameters
    ----------
    size, kernel, stride : int
        Input length, window length and step.

    Returns
    -------
    tuple of int
        ``(before, after)``.
    """
    total = max((output_size(size, kernel, stride, "same") - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _windows(
    x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], padding: str,
    fill: float,
) -> np.ndarray:
    """All windows of an NHWC batch: ``(batch, out_h, out_w, channels, kh, kw)``."""
    if x.ndim != 4:
        raise ValueError(
            f"expected images of shape (batch, height, width, channels), got {x.shape}; "
            "add a batch axis with x[None]"
        )
    if _check_padding(padding) == "same":
        pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[1:3], window, strides)]
        x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    if x.shape[1] < window[0] or x.shape[2] < window[1]:
        raise ValueError(f"a {window} window does not fit into images of {x.shape[1:3]}")
    views = sliding_window_view(x, window, axis=(1, 2))
    return views[:, :: strides[0], :: strides[1]]


def conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
) -> np.ndarray:
    """2-D convolution as ``keras.layers.Conv2D`` computes it, without activation (chapter 6).

    Deep-learning "convolution" is a cross-correlation: the kernel is slid over the
    image *without* flipping it, and each output is the sum of the window times the
    kernel over height, width and input channels, plus the filter's bias.

    Parameters
    ----------
    x : numpy.ndarray
        Images ``(batch, height, width, in_channels)``.
    kernel : numpy.ndarray
        Weights ``(kh, kw, in_channels, filters)``, the layout of ``Conv2D.kernel``.
    bias : numpy.ndarray, optional
        One value per filter, ``(filters,)``.
    strides : int or pair of int
        Step between windows, rows then columns.
    padding : {"valid", "same"}
        Keras' padding mode; ``"same"`` pads with zeros as :func:`same_padding` says.

    Returns
    -------
    numpy.ndarray
        Feature maps ``(batch, out_h, out_w, filters)``.
    """
    x, kernel = np.asarray(x), np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
        raise ValueError(
            f"kernel must have shape (kh, kw, {x.shape[-1]}, filters) for images with "
            f"{x.shape[-1]} channels, got {kernel.shape}"
        )
    windows = _windows(x, kernel.shape[:2], _pair(strides, "strides"), padding, 0.0)
    out = np.einsum("nhwcij,ijcf->nhwf", windows, kernel, optimize=True)
    if bias is not None:
        out = out + np.asarray(bias)
    return out


def max_pool2d(
    x: np.ndarray,
    pool_size: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """Max pooling as ``keras.layers.MaxPooling2D`` computes it (chapter 6).

    Each output is the largest value of its window, channel by channel. As in
    Keras, the stride defaults to the pool size, and ``padding="same"`` pads with
    minus infinity, so padded positions never win.

    Parameters
    ----------
    x : numpy.ndarray
        Feature maps ``(batch, height, width, channels)``.
    pool_size : int or pair of int
        Window size.
    strides : int or pair of int, optional
        Step between windows; ``pool_size`` when not given.
    padding : {"valid", "same"}
        Keras' padding mode.

    Returns
    -------
    numpy.ndarray
        ``(batch, out_h, out_w, channels)``.
    """
    window = _pair(pool_size, "pool_size")
    step = window if strides is None else _pair(strides, "strides")
    windows = _windows(np.asarray(x), window, step, padding, -np.inf)
    return windows.max(axis=(-2, -1))


def conv2d_params(
    kernel_size: int | Sequence[int], in_channels: int, filters: int, use_bias: bool = True
) -> int:
    """Number of weights of a 2-D convolution (chapter 6).

    Every filter has one weight per kernel position and input channel, plus its
    bias: ``(kh * kw * in_channels + 1) * filters``. It does not depend on the
    image size.

    Parameters
    ----------
    kernel_size : int or pair of int
        Kernel height and width.
    in_channels, filters : int
        Channels in and out.
    use_bias : bool
        Whether each filter has a bias.

    Returns
    -------
    int
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    return (kh * kw * in_channels + int(use_bias)) * filters


def compose_convs(
    kernel1: np.ndarray,
    bias1: np.ndarray,
    kernel2: np.ndarray,
    bias2: np.ndarray,
    stride1: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two valid convolutions without activation into one (chapter 6).

    ``conv2d(conv2d(x, k1, b1, s1), k2, b2, s2)`` equals
    ``conv2d(x, k, b, s1 * s2)`` with the kernel and bias returned here: output
    ``p`` of the second layer reads input pixel ``s1 * s2 * p + s1 * q + r`` with
    weight ``k2[q] * k1[r]``, so ``k[s1 * q + r] = sum k2[q] k1[r]`` (summed over the
    channels in between), a kernel of ``s1 * (kh2 - 1) + kh1`` rows. Without a
    non-linearity between them, two layers can express nothing one layer cannot.

    Parameters
    ----------
    kernel1, bias1 : numpy.ndarray
        First layer, ``(kh1, kw1, c, m)`` and ``(m,)``.
    kernel2, bias2 : numpy.ndarray
        Second layer, ``(kh2, kw2, m, f)`` and ``(f,)``.
    stride1 : int
        Stride of the first layer (the second's stride multiplies it).

    Returns
    -------
    tuple of numpy.ndarray
        The merged kernel ``(kh, kw, c, f)`` and bias ``(f,)``.
    """
    k1, k2 = np.asarray(kernel1), np.asarray(kernel2)
    if k1.shape[3] != k2.shape[2]:
        raise ValueError(
            f"the first layer has {k1.shape[3]} filters but the second expects "
            f"{k2.shape[2]} input channels"
        )
    (kh1, kw1), (kh2, kw2), s = k1.shape[:2], k2.shape[:2], stride1
    merged = np.zeros((s * (kh2 - 1) + kh1, s * (kw2 - 1) + kw1, k1.shape[2], k2.shape[3]),
                      dtype=np.result_type(k1, k2))
    for q in range(kh2):
        for t in range(kw2):
            block = np.einsum("ijcm,mf->ijcf", k1, k2[q, t])
            merged[s * q: s * q + kh1, s * t: s * t + kw1] += block
    bias = np.asarray(bias2) + np.einsum("qtmf,m->f", k2, np.asarray(bias1))
    return merged, bias


def compose_dense(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a stack of dense layers without activation into one (chapter 6).

    ``((x W1 + b1) W2 + b2) ...`` is ``x W + b`` with ``W = W1 W2 ...`` and the
    biases carried through the later matrices.

    Parameters
    ----------
    layers : sequence of (weights, bias)
        Kernels ``(n_in, n_out)`` and biases ``(n_out,)`` in the order applied, as
        ``keras.layers.Dense.get_weights()`` returns them.

    Returns
    -------
    tuple of numpy.ndarray
        ``(W, b)`` of the single equivalent layer.
    """
    if not layers:
        raise ValueError("compose_dense needs at least one (weights, bias) pair")
    weights, bias = (np.asarray(a) for a in layers[0])
    for w, b in layers[1:]:
        weights, bias = weights @ w, bias @ w + b
    return weights, bias


@dataclass(frozen=True)
class ReceptiveField:
    """How much of the input one unit of a layer sees (chapter 6).

    Attributes
    ----------
    layer : str
        The layer's name.
    kind : str
        The layer's class name.
    output : int
        Side length of the layer's output grid.
    size : int
        Side of the input square that one output unit depends on (counting
        positions in the zero padding, as is usual).
    jump : int
        Input pixels between two neighbouring output units.
    start : int
        Input row (and column) where the first unit's field begins; negative when
        it starts in the padding.
    covered : int
        How many input rows (and columns), counted from the top (left), reach the
        layer's output at all: valid windows that do not fit leave the last ones
        unread, and no later layer reads them again.
    """

    layer: str
    kind: str
    output: int
    size: int
    jump: int
    start: int
    covered: int


_CONVS = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D"}
_POOLS = {"MaxPooling2D", "AveragePooling2D"}


def _square(value: Any, what: str, layer: str) -> int:
    a, b = _pair(value, what)
    if a != b:
        raise ValueError(f"receptive_fields handles square windows only; {layer} has {what} {value}")
    return a


def receptive_fields(model: Any) -> list[ReceptiveField]:
    """Receptive field of each layer of a model, up to its first non-grid layer (chapter 6).

    A layer with window ``k``, stride ``s`` (and dilation ``d``) on an input whose
    units are ``jump`` pixels apart and see ``size`` pixels gives units that see
    ``size + (d (k - 1)) jump`` pixels and lie ``jump * s`` apart. Layers that keep
    the grid (activations, batch normalization, dropout) change nothing. The list
    ends before the first layer without a grid (``Flatten``, ``Dense``, global
    pooling), whose units see everything the last grid layer covers.

    Parameters
    ----------
    model : keras.Model
        A built model with square inputs, for example ``models.seed_cnn()``.

    Returns
    -------
    list of ReceptiveField
        One entry per layer with a 4-D output, in order.
    """
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None:
        raise ValueError(f"receptive_fields needs square images of a fixed size, got {shape}")
    n = end = int(shape[1])
    size, jump, start = 1, 1, 0
    fields = []
    for layer in model.layers:
        kind = type(layer).__name__
        if len(layer.output.shape) != 4:
            break
        config = layer.get_config()
        if kind in _CONVS or kind in _POOLS:
            key = "kernel_size" if kind in _CONVS else "pool_size"
            k = _square(config[key], key, layer.name)
            s = _square(config.get("strides") or k, "strides", layer.name)
            d = _square(config.get("dilation_rate", 1), "dilation_rate", layer.name)
            span = d * (k - 1) + 1
            before = same_padding(n, span, s)[0] if config["padding"] == "same" else 0
            start -= before * jump
            size += (span - 1) * jump
            jump *= s
            n = output_size(n, span, s, config["padding"])
            end = min(end, start + (n - 1) * jump + size)
        elif int(layer.output.shape[1]) != n:
            raise ValueError(f"receptive_fields does not know how {layer.name} ({kind}) "
                             "changes the grid")
        fields.append(ReceptiveField(layer.name, kind, n, size, jump, start, end))
    return fields
