"""Chapter 6's NumPy convolution and pooling, checked against Keras' layers."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from cifar_tutorial import convolution as cv
from cifar_tutorial import models

# float32 sums of a few dozen products: Keras and NumPy may add in another order.
TOL = {"rtol": 1e-5, "atol": 1e-5}

CONV_CASES = list(itertools.product(
    ("valid", "same"),      # padding
    (1, 2),                 # stride
    ((1, 1), (3, 4)),       # input and output channels
    ((7, 7), (8, 6)),       # odd and even image sizes
    (2, 3),                 # even and odd kernels
))


def _images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _conv_layer(
    filters: int, kernel: int, stride: int, padding: str, channels: int, seed: int = 0
) -> keras.layers.Conv2D:
    """A built Conv2D whose kernel *and* bias are random (Keras starts biases at 0)."""
    layer = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding)
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    layer.set_weights([
        rng.normal(size=(kernel, kernel, channels, filters)).astype("float32"),
        rng.normal(size=filters).astype("float32"),
    ])
    return layer


@pytest.mark.parametrize("padding,stride,channels,size,kernel", CONV_CASES)
def test_conv2d_equals_keras(padding, stride, channels, size, kernel) -> None:
    c_in, c_out = channels
    x = _images((2, *size, c_in))
    layer = _conv_layer(c_out, kernel, stride, padding, c_in)
    weights, bias = layer.get_weights()
    expected = keras.ops.convert_to_numpy(layer(x))
    ours = cv.conv2d(x, weights, bias, strides=stride, padding=padding)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, **TOL)
    assert ours.shape[1:] == tuple(layer.compute_output_shape((2, *size, c_in)))[1:]


@pytest.mark.parametrize("padding,stride,channels,size,pool", [
    (p, s, c, n, k) for p, s, (_, c), n, k in CONV_CASES
] + [("valid", None, 3, (8, 6), 3), ("same", None, 3, (7, 7), 2)])
def test_max_pool2d_equals_keras(padding, stride, channels, size, pool) -> None:
    x = _images((2, *size, channels), seed=1)
    layer = keras.layers.MaxPooling2D(pool, strides=stride, padding=padding)
    expected = keras.ops.convert_to_numpy(layer(x))
    ours = cv.max_pool2d(x, pool, strides=stride, padding=padding)
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_max_pooling_pads_with_minus_infinity() -> None:
    # All values negative: a zero-padded "same" pool would return 0 at the border.
    x = -np.arange(1, 26, dtype="float32").reshape(1, 5, 5, 1)
    ours = cv.max_pool2d(x, 2, padding="same")
    assert ours.max() < 0
    np.testing.assert_array_equal(
        ours, keras.ops.convert_to_numpy(keras.layers.MaxPooling2D(2, padding="same")(x))
    )


def test_conv2d_is_a_cross_correlation_by_hand() -> None:
    x = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    kernel = np.zeros((2, 2, 1, 1))
    kernel[0, 1, 0, 0] = 1.0  # picks the top-right pixel of each window, unflipped
    out = cv.conv2d(x, kernel, np.array([0.5]))
    np.testing.assert_array_equal(out[0, :, :, 0], x[0, :3, 1:, 0] + 0.5)


def test_same_padding_puts_the_odd_zero_after() -> None:
    assert cv.same_padding(32, 3, 1) == (1, 1)
    assert cv.same_padding(32, 3, 2) == (0, 1)
    assert cv.same_padding(33, 3, 2) == (1, 1)
    assert cv.same_padding(6, 4, 1) == (1, 2)
    assert cv.same_padding(8, 1, 2) == (0, 0)


def test_output_size_equals_keras_compute_output_shape() -> None:
    for n, k, s, padding in itertools.product(range(3, 13), (1, 2, 3, 5), (1, 2, 3),
                                              ("valid", "same")):
        if padding == "valid" and k > n:
            continue
        conv = keras.layers.Conv2D(1, k, strides=s, padding=padding)
        pool = keras.layers.MaxPooling2D(k, strides=s, padding=padding)
        expected = cv.output_size(n, k, s, padding)
        assert conv.compute_output_shape((1, n, n, 1))[1] == expected, (n, k, s, padding)
        assert pool.compute_output_shape((1, n, n, 1))[1] == expected, (n, k, s, padding)
    assert cv.output_size(32, 3) == 30 and cv.output_size(30, 3, 3) == 10


def test_parameter_count_equals_keras_count_params() -> None:
    for k, c_in, filters, use_bias in itertools.product((1, 3, 5), (1, 3, 64), (1, 8, 64),
                                                        (True, False)):
        layer = keras.layers.Conv2D(filters, k, use_bias=use_bias)
        layer.build((None, 32, 32, c_in))
        assert cv.conv2d_params(k, c_in, filters, use_bias) == layer.count_params()
    assert cv.conv2d_params((3, 5), 2, 4) == (3 * 5 * 2 + 1) * 4


@pytest.mark.parametrize("stride1,stride2", [(1, 1), (1, 2), (2, 1)])
def test_two_linear_convolutions_are_one(stride1, stride2) -> None:
    first = _conv_layer(5, 3, stride1, "valid", 3, seed=2)
    second = _conv_layer(4, 3, stride2, "valid", 5, seed=3)
    x = _images((2, 15, 15, 3), seed=4)
    stacked = keras.ops.convert_to_numpy(keras.Sequential([first, second])(x))
    kernel, bias = cv.compose_convs(*first.get_weights(), *second.get_weights(), stride1)
    assert kernel.shape == (3 + 2 * stride1, 3 + 2 * stride1, 3, 4)
    merged = cv.conv2d(x, kernel, bias, strides=stride1 * stride2)
    assert merged.shape == stacked.shape
    np.testing.assert_allclose(merged, stacked, rtol=1e-4, atol=1e-4)
    # A ReLU in between breaks the equivalence.
    relu = keras.ops.convert_to_numpy(second(keras.ops.relu(first(x))))
    assert np.abs(relu - merged).max() > 1.0


def test_dense_stack_without_activation_is_one_matrix() -> None:
    rng = np.random.default_rng(5)
    sizes = (6, 5, 4, 3)
    stack = [keras.layers.Dense(n) for n in sizes[1:]]
    net = keras.Sequential([keras.Input((sizes[0],)), *stack])
    for layer in stack:
        w, b = layer.get_weights()
        layer.set_weights([w, rng.normal(size=b.shape).astype("float32")])
    x = _images((10, sizes[0]), seed=6)
    weights, bias = cv.compose_dense([layer.get_weights() for layer in stack])
    assert weights.shape == (6, 3) and bias.shape == (3,)
    np.testing.assert_allclose(x @ weights + bias, keras.ops.convert_to_numpy(net(x)), **TOL)
    h = x
    for i, layer in enumerate(stack):
        w, b = layer.get_weights()
        h = h @ w + b
        h = np.maximum(h, 0) if i < len(stack) - 1 else h
    assert np.abs(h - (x @ weights + bias)).max() > 0.1


def test_receptive_fields_of_a_small_model_by_hand() -> None:
    model = keras.Sequential([
        keras.Input((15, 15, 1)),
        keras.layers.Conv2D(2, 3, name="c1"),                                # 13
        keras.layers.MaxPooling2D(2, name="p1"),                             # 6
        keras.layers.ReLU(name="r"),
        keras.layers.Conv2D(2, 3, strides=2, padding="same", name="c2"),    # 3
        keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same", name="c3"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    fields = cv.receptive_fields(model)
    table = [(f.layer, f.output, f.size, f.jump, f.start, f.covered) for f in fields]
    assert table == [
        ("c1", 13, 3, 1, 0, 15),
        ("p1", 6, 4, 2, 0, 14),    # 3 + (2 - 1) * 1; the 13th row of c1 is dropped
        ("r", 6, 4, 2, 0, 14),
        ("c2", 3, 8, 4, 0, 14),    # 4 + 2 * 2; SAME pads (0, 1) on 6
        ("c3", 3, 24, 4, -8, 14),  # dilated span 5: 8 + 4 * 4; pads (2, 2) -> 0 - 2 * 4
    ]


def test_receptive_field_is_what_the_output_depends_on() -> None:
    model = keras.Sequential([
        keras.Input((13, 13, 1)),
        keras.layers.Conv2D(1, 3, kernel_initializer="ones"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(1, 3, strides=2, padding="same", kernel_initializer="ones"),
    ])
    last = cv.receptive_fields(model)[-1]
    x = np.zeros((13 * 13 + 1, 13, 13, 1), dtype="float32")
    for i in range(13 * 13):
        x[i + 1].flat[i] = 1.0  # image i + 1 has a single bright pixel
    out = keras.ops.convert_to_numpy(model(x))[:, :, :, 0]
    changed = (np.abs(out[1:] - out[0]) > 0).reshape(13, 13, *out.shape[1:])
    unit = changed[:, :, 1, 1]  # the pixels that move output unit (1, 1)
    rows = np.flatnonzero(unit.any(axis=1))
    lo = last.start + last.jump
    assert rows.tolist() == list(range(max(lo, 0), min(lo + last.size, 13)))
    reached = np.flatnonzero(changed.any(axis=(1, 2, 3)))
    assert reached.max() + 1 == last.covered


def test_seed_cnn_never_reads_its_last_six_rows_and_columns() -> None:
    keras.utils.set_random_seed(0)
    model = models.seed_cnn()
    fields = cv.receptive_fields(model)
    assert [f.kind for f in fields] == ["Conv2D", "MaxPooling2D"] * 2
    assert [(f.size, f.jump) for f in fields] == [(3, 1), (5, 3), (11, 3), (17, 9)]
    covered = fields[-1].covered
    assert covered == 26
    x = np.repeat(_images((1, 32, 32, 3), seed=7), 3, axis=0)
    x[1, covered:, :, :] = 9.0
    x[1, :, covered:, :] = -9.0
    x[2, covered - 1, 0, :] += 9.0
    out = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_array_equal(out[1], out[0])
    assert np.abs(out[2] - out[0]).max() > 0


@pytest.mark.parametrize("call,fragment", [
    (lambda: cv.conv2d(np.zeros((4, 4, 1)), np.zeros((3, 3, 1, 1))), "add a batch axis"),
    (lambda: cv.conv2d(np.zeros((1, 4, 4, 2)), np.zeros((3, 3, 1, 1))), "kernel must have"),
    (lambda: cv.conv2d(np.zeros((1, 2, 2, 1)), np.zeros((3, 3, 1, 1))), "does not fit"),
    (lambda: cv.max_pool2d(np.zeros((1, 4, 4, 1)), padding="full"), "padding must be"),
    (lambda: cv.max_pool2d(np.zeros((1, 4, 4, 1)), 0), "pool_size must be"),
    (lambda: cv.compose_convs(np.zeros((3, 3, 1, 2)), np.zeros(2), np.zeros((3, 3, 3, 1)),
                              np.zeros(1)), "2 filters"),
    (lambda: cv.compose_dense([]), "at least one"),
    (lambda: cv.receptive_fields(keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(1, (3, 1))])), "square windows"),
])
def test_bad_arguments_say_what_is_wrong(call, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        call()


def test_map_grid_shows_every_map_legibly() -> None:
    from cifar_tutorial import plots

    rng = np.random.default_rng(8)
    fig = plots.map_grid(rng.normal(size=(5, 6, 6)), titles=list("abcde"), ncols=4,
                         signed=True)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 8 and len(shown) == 5
    assert [ax.get_title() for ax in shown] == list("abcde")
    assert all(ax.title.get_fontsize() >= 9 for ax in shown)
    assert all(ax.axison and ax.spines["top"].get_visible() for ax in shown)
    assert not any(ax.axison for ax in fig.axes if not ax.images)
    assert not shown[0].get_xticks().size and not shown[0].get_yticks().size
    low, high = shown[0].images[0].get_clim()
    assert high > 0 and low == -high
    assert fig.dpi >= 150
    mixed = plots.map_grid(rng.uniform(size=(2, 3, 3)), signed=[False, True])
    assert mixed.axes[0].images[0].get_clim()[0] >= 0 > mixed.axes[1].images[0].get_clim()[0]
    rgb = plots.map_grid(rng.uniform(size=(3, 4, 4, 3)))
    assert rgb.axes[0].images[0].get_array().shape == (4, 4, 3)
    with pytest.raises(ValueError, match="stack of maps"):
        plots.map_grid(np.zeros((4, 4)))
