"""Export to SavedModel and TensorFlow Lite (chapter 11): the exported models predict like Keras."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_tutorial import export, fastnet, models
from cifar_tutorial.recipes import FastHyperparameters
from tests.fixtures import square_images

INT8_ACCURACY_DROP = 0.05
"""Largest accuracy an int8 model may lose against its float32 original on the test images."""

NARROW = FastHyperparameters(widths=(8, 16, 16))
"""The recipe's net, fused batch norms and compiled GELUs included, with narrow blocks."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """The seed CNN trained a little, as a SavedModel, a float32 and an int8 TFLite file."""
    keras.utils.set_random_seed(0)
    model = models.seed_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  jit_compile=False)
    x, y = square_images(320)
    model.fit(x / 255.0, y, epochs=3, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("export")
    saved = export.export_saved_model(model, folder / "saved")
    tflite = export.convert_to_tflite(saved, folder / "float32.tflite")
    int8 = export.convert_to_tflite(saved, folder / "int8.tflite", "int8", calibration_images=x[:100])
    return model, saved, tflite, int8


def test_saved_model_predicts_like_keras(exported) -> None:
    model, saved, _, _ = exported
    x, _ = square_images(40, seed=1)
    expected = model.predict(x / 255.0, verbose=0)
    got = export.predict(export.SavedModelRunner(saved), x, batch_size=16)
    assert got.shape == (40, 10)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(export.predict(export.keras_runner(model), x), expected, atol=1e-5)


def test_float_tflite_predicts_like_keras(exported) -> None:
    model, _, tflite, _ = exported
    x, _ = square_images(40, seed=1)
    runner = export.TFLiteRunner(tflite)
    got = export.predict(runner, x, batch_size=16)   # batches of 16, 16 and 8
    np.testing.assert_allclose(got, model.predict(x / 255.0, verbose=0), atol=1e-5)
    np.testing.assert_allclose(runner(x[:1] / np.float32(255)), got[:1], atol=1e-6)


def test_int8_tflite_is_smaller_and_nearly_as_accurate(exported) -> None:
    model, _, tflite, int8 = exported
    x, y = square_images(200, seed=2)
    keras_accuracy = np.mean(model.predict(x / 255.0, verbose=0).argmax(1) == y)
    probs = export.predict(export.TFLiteRunner(int8), x)
    assert keras_accuracy > 0.9
    assert np.mean(probs.argmax(1) == y) >= keras_accuracy - INT8_ACCURACY_DROP
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)   # softmax head, dequantized
    assert export.size_bytes(int8) < 0.4 * export.size_bytes(tflite)


def test_sizes_and_latency(exported, tmp_path: Path) -> None:
    model, saved, tflite, _ = exported
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.bin").write_bytes(b"x" * 10)
    (tmp_path / "c.bin").write_bytes(b"y" * 5)
    assert export.size_bytes(tmp_path) == 15 and export.size_bytes(tmp_path / "c.bin") == 5
    assert export.size_bytes(saved) > export.size_bytes(tflite) > 4 * model.count_params() * 0.9
    x, _ = square_images(1)
    ms = export.latency_ms(export.TFLiteRunner(tflite), x[0], repeats=5, warmup=1)
    assert ms > 0


def test_latency_is_the_median_of_the_timed_calls(monkeypatch) -> None:
    # a clock that each call of the runner moves on by a known time, in seconds
    clock, durations = [0.0], iter([9.0, 9.0, 0.001, 0.003, 0.002, 5.0, 0.004])
    shapes = []
    monkeypatch.setattr(export.time, "perf_counter", lambda: clock[0])

    def runner(x: np.ndarray) -> None:
        shapes.append(x.shape)
        clock[0] += next(durations)

    ms = export.latency_ms(runner, np.zeros((32, 32, 3), np.uint8), repeats=5, warmup=2)
    assert ms == pytest.approx(3.0)  # the two warm-up calls (9 s) not timed, 5 s outvoted
    assert shapes == [(1, 32, 32, 3)] * 7


def test_bad_arguments(exported, tmp_path: Path) -> None:
    _, saved, _, _ = exported
    with pytest.raises(ValueError, match="calibration_images"):
        export.convert_to_tflite(saved, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match="unknown quantization"):
        export.convert_to_tflite(saved, tmp_path / "m.tflite", "int4")


def test_a_bfloat16_model_converts_through_a_float32_copy(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    net = fastnet.build_fast_net(NARROW, seed=0, precision="mixed_bfloat16")  # as trained
    x, _ = square_images(32)
    copy = export.float32_copy(net)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert copy.get_layer("block0_gelu0").activation is keras.activations.gelu
    assert net.get_layer("block0_gelu0").activation is fastnet.gelu_compiled
    for a, b in zip(net.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    expected = copy.predict(x / 255.0, verbose=0)
    # bfloat16 keeps about three significant digits
    np.testing.assert_allclose(net.predict(x / 255.0, verbose=0), expected, atol=0.05)
    saved = export.export_saved_model(net, tmp_path / "saved")      # serving takes bfloat16
    with pytest.raises(ValueError, match="pass the Keras model"):
        export.convert_to_tflite(saved, tmp_path / "refused.tflite")
    tflite = export.convert_to_tflite(net, tmp_path / "float32.tflite")
    np.testing.assert_allclose(export.predict(export.TFLiteRunner(tflite), x), expected, atol=1e-5)


@pytest.mark.slow
def test_the_fast_net_converts_to_int8(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    net = fastnet.build_fast_net(NARROW, seed=0)
    x, _ = square_images(64)
    int8 = export.convert_to_tflite(net, tmp_path / "int8.tflite", "int8", calibration_images=x)
    expected = net.predict(x / 255.0, verbose=0)
    got = export.predict(export.TFLiteRunner(int8), x)
    assert got.shape == expected.shape
    # logits of an untrained net: the quantized ones follow the float ones closely
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.95
