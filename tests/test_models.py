"""Models of chapters 3, 6 and 8."""

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


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown output head"):
        models.OutputNormalization("sigmoid")
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model("resnet1000")


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
