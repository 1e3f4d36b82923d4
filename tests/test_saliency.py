"""Gradient saliency, Grad-CAM and the weight-randomization check (chapter 11)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_tutorial import fastnet, models, saliency
from cifar_tutorial.recipes import FastHyperparameters
from tests.fixtures import square_images


def test_gradient_saliency_is_the_footprint_of_the_weights() -> None:
    # logit 0 reads only the pixels of rows 1-2, columns 4-6: its gradient is zero elsewhere
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, use_bias=False)])
    kernel = np.zeros((8, 8, 3, 2), dtype=np.float32)
    kernel[1:3, 4:7, 0, 0] = 2.0
    kernel[1:3, 4:7, 1, 0] = -1.0
    kernel[..., 1] = 0.5
    model.layers[-1].kernel.assign(kernel.reshape(-1, 2))
    images = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
    maps = saliency.gradient_saliency(model, images, classes=[0, 0, 0])
    assert maps.shape == (3, 8, 8) and maps.dtype == np.float32
    expected = np.zeros((8, 8), dtype=np.float32)
    expected[1:3, 4:7] = 1.0                            # max(|2|, |-1|), divided by 2
    for m in maps:
        np.testing.assert_allclose(m, expected)
    np.testing.assert_allclose(saliency.gradient_saliency(model, images, classes=[1, 1, 1]), 1.0)


def test_grad_cam_finds_the_bright_square() -> None:
    # one feature map (the pixel sum) that speaks for class 0 and against class 1
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(1, 1, use_bias=False, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, use_bias=False)])
    model.layers[0].kernel.assign(np.full((1, 1, 3, 1), 1 / 3, dtype=np.float32))
    model.layers[-1].kernel.assign(np.array([[1.0, -1.0]], dtype=np.float32))
    image = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    image[0, 2:6, 9:13] = 200
    cam = saliency.grad_cam(model, image, classes=[0])
    assert cam.shape == (1, 16, 16)
    assert cam[0, 2:6, 9:13].min() == pytest.approx(1.0)
    assert cam[0].sum() == pytest.approx(16.0)           # nothing outside the square
    np.testing.assert_array_equal(saliency.grad_cam(model, image, classes=[1]), 0.0)


def test_rank_correlation() -> None:
    a = np.arange(16.0).reshape(4, 4)
    assert saliency.rank_correlation(a, a ** 3) == pytest.approx(1.0)   # same ordering
    assert saliency.rank_correlation(a, -a) == pytest.approx(-1.0)
    ties = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert saliency.rank_correlation(ties, np.array([[0.0, 0.0], [0.0, 5.0]])) == pytest.approx(1.0)
    # average ranks of ties: Spearman of [0, 0, 1, 2] and [1, 2, 3, 4] is Pearson of
    # [0.5, 0.5, 2, 3] and [0, 1, 2, 3]
    expected = np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1]
    got = saliency.rank_correlation(np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert got == pytest.approx(expected)
    assert np.isnan(saliency.rank_correlation(np.zeros((2, 2)), a[:2, :2]))
    batch = saliency.rank_correlation(np.stack([a, a]), np.stack([a, -a]))
    np.testing.assert_allclose(batch, [1.0, -1.0])
    with pytest.raises(ValueError, match="shapes"):
        saliency.rank_correlation(a, a[:2])


@pytest.fixture(scope="module")
def trained() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """The seed CNN trained for a few epochs to tell which corner holds the square."""
    keras.utils.set_random_seed(0)
    model = models.seed_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    x, y = square_images(320)
    model.fit(x / 255.0, y, epochs=4, batch_size=32, verbose=0)
    return model, *square_images(16, seed=1)


def test_trained_maps_depend_on_the_weights(trained) -> None:
    model, x, y = trained
    assert np.mean(model.predict(x / 255.0, verbose=0).argmax(1) == y) >= 0.9
    cam = saliency.grad_cam(model, x, classes=y)
    assert cam.shape == (16, 32, 32) and cam.max() == pytest.approx(1.0)
    np.testing.assert_allclose(saliency.rank_correlation(cam, saliency.grad_cam(model, x, y)), 1.0)
    # the map is brightest inside the quadrant that holds the square, for most images
    quadrant = [cam[i].reshape(2, 16, 2, 16).mean(axis=(1, 3)).argmax() for i in range(16)]
    assert np.mean(np.array(quadrant) == y) >= 0.75
    randomized = saliency.randomized_copy(model, seed=0)
    random_cam = saliency.grad_cam(randomized, x, classes=y)
    alike = np.nan_to_num(saliency.rank_correlation(cam, random_cam), nan=0.0)  # NaN: a flat map
    assert np.median(alike) < 0.5
    random_grad = saliency.gradient_saliency(randomized, x, classes=y)
    assert np.median(saliency.rank_correlation(saliency.gradient_saliency(model, x, y), random_grad)) < 0.9


def test_randomized_copy_keeps_the_model_and_the_scales(trained) -> None:
    model, x, _ = trained
    before = [w.copy() for w in model.get_weights()]
    copy = saliency.randomized_copy(model, seed=0)
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    for w, r in zip(model.get_weights(), copy.get_weights()):
        assert r.shape == w.shape and not np.array_equal(r, w)
        assert r.std() == pytest.approx(w.std(), rel=0.2)
    again = saliency.randomized_copy(model, seed=0)
    for a, b in zip(copy.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_saved_and_functional_models(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    seed = models.seed_cnn()
    seed.save(tmp_path / "seed.keras")
    loaded = keras.models.load_model(tmp_path / "seed.keras")
    x, _ = square_images(2)
    np.testing.assert_allclose(saliency.grad_cam(loaded, x), saliency.grad_cam(seed, x), atol=1e-6)
    assert saliency.gradient_saliency(loaded, x).shape == (2, 32, 32)
    fast = fastnet.build_fast_net(FastHyperparameters(widths=(8, 16, 16)), seed=0)
    assert saliency.conv_layer_names(fast)[-1] == "block2_conv1"
    assert saliency.grad_cam(fast, x, layer="block1_gelu1").shape == (2, 32, 32)
    assert saliency.gradient_saliency(fast, x, classes=[3, 4]).shape == (2, 32, 32)
    fast.save(tmp_path / "fast.keras")
    loaded_fast = keras.models.load_model(tmp_path / "fast.keras")
    np.testing.assert_allclose(saliency.grad_cam(loaded_fast, x, layer="block1_gelu1"),
                               saliency.grad_cam(fast, x, layer="block1_gelu1"), atol=1e-6)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        saliency.grad_cam(seed, x, layer="nope")
    with pytest.raises(ValueError, match="one class per image"):
        saliency.grad_cam(seed, x, classes=[1, 2, 3])


@pytest.mark.parametrize("functional", [False, True])
def test_a_dense_softmax_head_is_explained_by_its_logits(functional: bool) -> None:
    """Chapter 7 ends the seed CNN in ``Dense(10, activation="softmax")``: the score is that
    layer's value before the softmax, not a unit of the layer before it."""
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
              keras.layers.Dense(6, activation="relu"),
              keras.layers.Dense(3, activation="softmax")]
    if functional:
        inputs = keras.Input((8, 8, 3))
        x = inputs
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
    else:
        model = keras.Sequential([keras.Input((8, 8, 3)), *layers])
    images = np.random.default_rng(1).random((4, 8, 8, 3)).astype(np.float32)
    hidden = keras.Model(model.inputs[0], model.layers[-2].output)(images)
    head = model.layers[-1]
    logits = (hidden @ head.kernel + head.bias).numpy()
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), model(images).numpy(),
                               rtol=1e-5)
    scores = saliency._extractor(model)(images).numpy()
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(scores, logits, rtol=1e-5, atol=1e-6)
    # The map of class 0 is the input gradient of logit 0, whatever the other logits do.
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = keras.Model(model.inputs[0], model.layers[-2].output)(x) @ head.kernel + head.bias
        score = z[:, 0]
    grads = np.abs(tape.gradient(score, x).numpy()).max(axis=-1)
    expected = grads / grads.reshape(4, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(saliency.gradient_saliency(model, images, classes=[0] * 4),
                               expected, rtol=1e-5, atol=1e-6)
