"""The fast recipe's network and its layers (chapter 9): cifar_tutorial.fastnet."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_tutorial import fastnet
from cifar_tutorial.recipes import FastHyperparameters

NARROW = FastHyperparameters(widths=(8, 16, 16))
"""The recipe with narrow blocks, so that the nets build and run in a moment."""


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)


def test_whitening_filters_whiten_patches() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, 8, 8, 3), dtype=np.uint8)
    no_eps = dataclasses.replace(NARROW, whiten_eps=0.0)
    kernel, eigenvalues = fastnet.whitening_filters(images, no_eps)
    assert kernel.shape == (2, 2, 3, 24)
    assert np.all(np.diff(eigenvalues) <= 1e-6)  # largest first
    # Projected on the first 12 filters, patches have unit variance and no correlation.
    x = (images.astype(np.float32) - fastnet.CIFAR10_MEAN) / fastnet.CIFAR10_STD
    patches = np.stack([x[:, i:7 + i, j:7 + j, :] for i in range(2) for j in range(2)], axis=3)
    patches = patches.reshape(-1, 12).astype(np.float64)
    patches -= patches.mean(axis=0)
    white = patches @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(12), atol=1e-3)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])


def test_whitening_filters_follow_the_patch_size_and_image_count() -> None:
    images = _images(40)
    hyp = dataclasses.replace(NARROW, whiten_patch=3, whiten_images=10)
    kernel, eigenvalues = fastnet.whitening_filters(images, hyp)
    assert kernel.shape == (3, 3, 3, 54) and eigenvalues.shape == (27,)
    same, _ = fastnet.whitening_filters(images[:10], hyp)  # only the first 10 count
    np.testing.assert_array_equal(kernel, same)
    net = fastnet.build_fast_net(hyp, whiten_kernel=kernel, seed=0)
    assert net.get_layer("whiten").kernel.shape == (3, 3, 3, 54)
    with pytest.raises(ValueError, match="whiten_patch=2"):
        fastnet.build_fast_net(NARROW, whiten_kernel=kernel)


def test_the_net_standardises_unit_images_like_pixel_values() -> None:
    """Normalization(MEAN / 255, (STD / 255)**2) on x / 255 is (x - MEAN) / STD."""
    net = fastnet.build_fast_net(NARROW, seed=0)
    x = _images(4).astype(np.float32)
    got = keras.ops.convert_to_numpy(net.get_layer("normalize")(x / 255.0))
    np.testing.assert_allclose(got, (x - fastnet.CIFAR10_MEAN) / fastnet.CIFAR10_STD, atol=1e-5)


def test_fast_net_shapes_frozen_whitening_and_head() -> None:
    kernel, _ = fastnet.whitening_filters(np.zeros((4, 32, 32, 3), np.uint8) + np.arange(
        32, dtype=np.uint8)[None, :, None, None], NARROW)
    model = fastnet.build_fast_net(NARROW, whiten_kernel=kernel, seed=0)
    out = model.predict(_images() / 255.0, verbose=0)
    assert out.shape == (2, 10) and out.dtype == np.float32
    whiten = model.get_layer("whiten")
    np.testing.assert_array_equal(whiten.kernel.numpy(), kernel)
    assert not whiten.kernel.trainable and whiten.bias.trainable
    assert model.layers[-1].name == "logits" and model.inputs[0].shape[1:] == (32, 32, 3)


def test_fast_net_takes_its_numbers_from_the_hyperparameters() -> None:
    hyp = dataclasses.replace(NARROW, bn_momentum=0.7, bn_eps=1e-5, scaling_factor=0.5,
                              fused_norm=False, compiled_gelu=False)
    net = fastnet.build_fast_net(hyp, seed=0)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6 and not any(isinstance(n, fastnet.FusedBatchNorm) for n in norms)
    assert {(n.momentum, n.epsilon) for n in norms} == {(0.7, 1e-5)}
    assert net.get_layer("scale").scale == 0.5
    assert [net.get_layer(f"block{b}_conv1").filters for b in range(3)] == [8, 16, 16]
    assert net.get_layer("block0_gelu0").activation is keras.activations.gelu
    # The head's initial weights are uniform of variance init_scale / fan_in.
    for scale in (1 / 3, 3.0):
        head = fastnet.build_fast_net(dataclasses.replace(NARROW, init_scale=scale),
                                      seed=0).get_layer("head").kernel.numpy()
        assert np.abs(head).max() <= np.sqrt(3 * scale / 16) + 1e-6
        assert np.abs(head).max() > 0.8 * np.sqrt(3 * scale / 16)


def test_the_3x3_convolutions_start_as_the_identity() -> None:
    net = fastnet.build_fast_net(NARROW, seed=0)
    kernel = net.get_layer("block1_conv1").kernel.numpy()  # 16 -> 16 channels
    np.testing.assert_array_equal(kernel[1, 1], np.eye(16))
    np.testing.assert_array_equal(kernel[0, 0], np.zeros((16, 16)))


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown precision 'float16'; choose one of float32"):
        fastnet.build_fast_net(NARROW, precision="float16")


def test_fast_net_saves_and_loads(tmp_path) -> None:
    model = fastnet.build_fast_net(dataclasses.replace(NARROW, fused_norm=True), seed=0)
    assert isinstance(model.get_layer("block0_bn0"), fastnet.FusedBatchNorm)
    x = _images() / 255.0
    model.save(tmp_path / "fast.keras")
    loaded = keras.models.load_model(tmp_path / "fast.keras")  # safe mode: no lambdas
    assert isinstance(loaded.get_layer("block0_bn0"), fastnet.FusedBatchNorm)
    assert loaded.get_layer("block0_gelu0").activation is fastnet.gelu_compiled
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def _train_once(layer: keras.layers.BatchNormalization, x: tf.Tensor) -> tuple:
    if not layer.built:
        layer.build(x.shape)
    layer.beta.assign(np.linspace(-1.0, 1.0, 4))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * tf.cos(x))
    dx, dbeta = tape.gradient(loss, [x, layer.beta])
    return y, dx, dbeta, layer.moving_mean, layer.moving_variance


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_trains_like_keras_batch_norm(dtype) -> None:
    """One training call: the same output, gradients and moving averages as Keras' layer."""
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 4)), "float32")
    kwargs = dict(momentum=0.6, epsilon=1e-12, scale=False, dtype=dtype)
    plain, fused = keras.layers.BatchNormalization(**kwargs), fastnet.FusedBatchNorm(**kwargs)
    results = [_train_once(layer, x) for layer in (plain, fused)]
    tol = 1e-5 if dtype == "float32" else 2e-2
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(tf.cast(b, "float32")),
                                   np.asarray(tf.cast(a, "float32")), rtol=tol, atol=tol)
    assert results[1][0].dtype == results[0][0].dtype
    # Inference is Keras' own: the same moving averages give the same output.
    np.testing.assert_allclose(np.asarray(tf.cast(fused(x, training=False), "float32")),
                               np.asarray(tf.cast(plain(x, training=False), "float32")),
                               rtol=tol, atol=tol)


def test_fused_batch_norm_needs_no_renorm_attribute() -> None:
    """Keras before 3.14 has no ``renorm`` (nor ``synchronized``) on its batch norm."""
    x = tf.constant(np.random.default_rng(1).normal(0.0, 2.0, (4, 3, 3, 4)), "float32")
    kwargs = dict(momentum=0.6, epsilon=1e-12, scale=False)
    older = fastnet.FusedBatchNorm(**kwargs)
    older.build(x.shape)  # this Keras's build reads renorm; older ones had none to read
    for name in ("renorm", "synchronized"):
        if name in vars(older):
            delattr(older, name)
    assert not hasattr(older, "renorm")
    y, *_ = _train_once(older, x)
    expected, *_ = _train_once(keras.layers.BatchNormalization(**kwargs), x)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_compiled_gelu_is_keras_gelu() -> None:
    x = tf.constant(np.linspace(-6.0, 6.0, 97), "float32")
    grads = []
    for f in (keras.activations.gelu, fastnet.gelu_compiled):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        grads.append((y, tape.gradient(y, x)))
    (y0, g0), (y1, g1) = grads
    np.testing.assert_allclose(y1.numpy(), y0.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g1.numpy(), g0.numpy(), rtol=1e-5, atol=1e-6)
    net = fastnet.build_fast_net(NARROW, seed=0)  # compiled_gelu is the recipe's default
    assert net.get_layer("block0_gelu0").activation is fastnet.gelu_compiled
