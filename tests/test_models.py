"""The networks of chapters 3, 7 and 9: cifar_tutorial.models (the fast net: test_fastnet.py)."""

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
        (lambda: models.vgg_bn(head="softmax_base", base=-1.0), "base must be positive and not 1"),
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


@pytest.mark.parametrize("name", models.MODELS)
def test_every_model_takes_the_base_of_its_head(name: str) -> None:
    model = models.build_model(name, head="softmax_base", base=10.0)
    assert model.layers[-1].kind == "softmax_base" and model.layers[-1].base == 10.0


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
