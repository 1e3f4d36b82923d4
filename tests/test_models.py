"""The networks of chapters 3, 6 and 8: cifar_tutorial.models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_tutorial import maths, models


def test_seed_cnn_architecture() -> None:
    model = models.seed_cnn()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten",
                     "Dense", "Dense", "Dense", "OutputNormalization"]
    assert model.output_shape == (None, 10)
    # 3*3*3*64+64 + 3*3*64*64+64 + 256*128+128 + 128*64+64 + 64*10+10
    assert model.count_params() == 1792 + 36928 + 32896 + 8256 + 650


def test_without_flatten_the_output_is_not_a_class_vector() -> None:
    """The seed's model, as printed, lacks Flatten: its output keeps the 2x2 grid."""
    seed_as_printed = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(3),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(3),
        keras.layers.Dense(128), keras.layers.Dense(64), keras.layers.Dense(10),
    ])
    assert seed_as_printed.output_shape == (None, 2, 2, 10)


@pytest.mark.parametrize("head", models.HEADS)
def test_heads(head: str) -> None:
    layer = models.OutputNormalization(head, base=10.0)
    z = np.array([[1.0, -2.0, 0.5, 3.0]], dtype="float32")
    out = keras.ops.convert_to_numpy(layer(z))
    expected = {
        "softmax": maths.softmax(z),
        "softmax_base": maths.softmax_base(z, 10.0),
        "l2": maths.l2_normalize(z),
        "l1_relu": maths.l1_normalize(np.maximum(z, 0)),
        "logits": z,
    }[head]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert maths.is_distribution(out, atol=1e-5) == (head in ("softmax", "softmax_base", "l1_relu"))


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: models.build_model("resnet1000"), "unknown model 'resnet1000'; choose one of seed"),
        (lambda: models.build_model("fast"), "unknown model 'fast'"),
        (lambda: models.build_model("seed", head="sigmoid"), "unknown output head 'sigmoid'; choose one of"),
        (lambda: models.build_model("vgg_bn", head="nope"), "unknown output head 'nope'"),
        (lambda: models.OutputNormalization("softmax_base", base=1.0), "base must be positive and not 1"),
        (lambda: models.build_fast_net(precision="float16"), "unknown precision"),
    ],
)
def test_bad_names_are_refused(build, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert fragment in str(info.value)


def test_build_model_by_name() -> None:
    assert models.build_model("seed").layers[-1].kind == "softmax"
    assert models.build_model("seed", head="l2").layers[-1].kind == "l2"
    vgg = models.build_model("vgg_bn", widths=(4, 8, 8))
    assert vgg.name == "vgg_bn" and vgg.layers[-1].kind == "logits"


def test_outputs_logits() -> None:
    assert models.outputs_logits(models.seed_cnn(head="logits"))
    assert not models.outputs_logits(models.seed_cnn(head="softmax"))
    assert models.outputs_logits(models.vgg_bn())


def test_save_and_load_roundtrip(tmp_path) -> None:
    model = models.seed_cnn(head="softmax_base", base=3.0)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[-1].kind == "softmax_base" and loaded.layers[-1].base == 3.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_vgg_bn_shapes() -> None:
    model = models.vgg_bn(widths=(8, 16, 32), dropout=0.1)
    assert model.output_shape == (None, 10)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


@pytest.mark.parametrize("momentum", [0.99, 0.9])
def test_vgg_bn_sets_the_batch_norm_momentum(momentum: float) -> None:
    net = models.vgg_bn(widths=(4, 8, 8), bn_momentum=momentum)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6 and all(n.momentum == momentum for n in norms)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in models.vgg_bn(widths=(4, 8, 8), batch_norm=False).layers)


def test_layer_table_lists_every_layer_and_the_total() -> None:
    model = models.seed_cnn()
    lines = models.layer_table(model).splitlines()
    assert lines[0].split()[:2] == ["layer", "output"]
    assert len(lines) == len(model.layers) + 4  # header, two rules, total
    assert lines[-1].split() == ["total", f"{model.count_params():,}"]
    assert "(None, 30, 30, 64)" in lines[2] and lines[2].rstrip().endswith("1,792")


# --------------------------------------------------------------------------- fast net


def test_whitening_filters_whiten_patches() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, 8, 8, 3), dtype=np.uint8)
    kernel, eigenvalues = models.whitening_filters(images, patch_size=2, eps=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    assert np.all(np.diff(eigenvalues) <= 1e-6)  # largest first
    # Projected on the first 12 filters, patches have unit variance and no correlation.
    x = (images.astype(np.float32) - models.CIFAR10_MEAN) / models.CIFAR10_STD
    patches = np.stack([x[:, i:7 + i, j:7 + j, :] for i in range(2) for j in range(2)], axis=3)
    patches = patches.reshape(-1, 12).astype(np.float64)
    patches -= patches.mean(axis=0)
    white = patches @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(12), atol=1e-3)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])


def test_fast_net_shapes_and_frozen_whitening() -> None:
    kernel, _ = models.whitening_filters(np.zeros((4, 32, 32, 3), np.uint8) + np.arange(
        32, dtype=np.uint8)[None, :, None, None])
    model = models.build_fast_net((8, 16, 16), whiten_kernel=kernel, precision="float32", seed=0)
    out = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert out.shape == (2, 10) and out.dtype == np.float32
    whiten = model.get_layer("whiten")
    np.testing.assert_array_equal(whiten.kernel.numpy(), kernel)
    assert not whiten.kernel.trainable and whiten.bias.trainable


def test_fast_net_saves_and_loads(tmp_path) -> None:
    model = models.build_fast_net((8, 16, 16), precision="float32", seed=0, gelu_approximate=True)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "fast.keras")
    loaded = keras.models.load_model(tmp_path / "fast.keras")  # safe mode: no lambdas
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_trains_like_keras_batch_norm(dtype) -> None:
    """One training call: the same output, gradients and moving averages as Keras' layer."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 4)), "float32")
    kwargs = dict(momentum=0.6, epsilon=1e-12, scale=False, dtype=dtype)
    plain, fused = keras.layers.BatchNormalization(**kwargs), models.FusedBatchNorm(**kwargs)
    results = []
    for layer in (plain, fused):
        layer.build(x.shape)
        layer.beta.assign(np.linspace(-1.0, 1.0, 4))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * tf.cos(x))
        dx, dbeta = tape.gradient(loss, [x, layer.beta])
        results.append((y, dx, dbeta, layer.moving_mean, layer.moving_variance))
    tol = 1e-5 if dtype == "float32" else 2e-2
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(tf.cast(b, "float32")),
                                   np.asarray(tf.cast(a, "float32")), rtol=tol, atol=tol)
    assert results[1][0].dtype == results[0][0].dtype
    # Inference is Keras' own: the same moving averages give the same output.
    np.testing.assert_allclose(np.asarray(tf.cast(fused(x, training=False), "float32")),
                               np.asarray(tf.cast(plain(x, training=False), "float32")),
                               rtol=tol, atol=tol)


def test_fast_net_with_fused_norm_saves_and_loads(tmp_path) -> None:
    model = models.build_fast_net((8, 16, 16), precision="float32", seed=0, fused_norm=True)
    assert isinstance(model.get_layer("block0_bn0"), models.FusedBatchNorm)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "fast.keras")
    loaded = keras.models.load_model(tmp_path / "fast.keras")
    assert isinstance(loaded.get_layer("block0_bn0"), models.FusedBatchNorm)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_compiled_gelu_is_keras_gelu() -> None:
    import tensorflow as tf

    x = tf.constant(np.linspace(-6.0, 6.0, 97), "float32")
    grads = []
    for f in (keras.activations.gelu, models.gelu_compiled):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        grads.append((y, tape.gradient(y, x)))
    (y0, g0), (y1, g1) = grads
    np.testing.assert_allclose(y1.numpy(), y0.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g1.numpy(), g0.numpy(), rtol=1e-5, atol=1e-6)
    net = models.build_fast_net((8, 16, 16), precision="float32", seed=0, compiled_gelu=True)
    assert net.get_layer("block0_gelu0").activation is models.gelu_compiled
