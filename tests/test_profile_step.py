"""bench/profile_step.py: sorting the profiler's ops into what they do, the FLOP count, and the
recipe's flags it shares with bench/fast_recipe.py."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from tests.fixtures import bench_script


@pytest.fixture(scope="module")
def profile():
    with bench_script("profile_step") as module:
        yield module


@pytest.mark.parametrize("label, group", [
    ("fast_net_1/block1_conv0_1/convolution:_MklNativeConv2D", "3x3 convolutions"),
    ("gradient_tape/fast_net_1/block0_conv1_1/convolution/Conv2DBackpropFilter:"
     "_MklNativeConv2DBackpropFilter", "3x3 convolutions"),
    ("fast_net_1/whiten_1/BiasAdd:_MklNativeFusedConv2D", "whitening"),
    ("fast_net_1/whiten_gelu_1/Gelu/Erfc:Erfc", "GELU"),
    ("fast_net_1/block0_bn0_1/moments/SquaredDifference:SquaredDifference", "batch norm"),
    ("fast_net_1/block2_bn1_1/FusedBatchNormV3:_MklFusedBatchNormV3", "batch norm"),
    ("fast_net_1/block1_bn0_1/Cast:Cast", "casts"),
    ("fast_net_1/block1_pool_1/MaxPool2d:_MklNativeMaxPool", "max pooling"),
    ("AddN_8:AddN", "gradient sums"),
    ("sgd/Mul_47:Mul", "optimizer, decay, Lookahead"),
    ("Mul_17:Mul", "optimizer, decay, Lookahead"),
    ("fast_net_1/head_1/MatMul:_MklMatMul", "loss and the rest"),
    ("CpuExecutable::ExecuteAsyncOnStream", "GELU"),
])
def test_ops_fall_into_their_groups(profile, label: str, group: str) -> None:
    name, op_type = label.rsplit(":", 1)
    assert profile.op_group(name, op_type) == group


def test_group_table_is_per_step_and_complete(profile) -> None:
    times = {"fast_net_1/block0_bn0_1/Cast:Cast": 30.0,
             "fast_net_1/block0_conv0_1/convolution:_MklNativeConv2D": 90.0,
             "gradient_tape/fast_net_1/block0_conv0_1/convolution/Conv2DBackpropInput:"
             "_MklNativeConv2DBackpropInput": 60.0}
    table = profile.group_table(times, steps=3)
    assert list(table) == list(profile.GROUPS)
    assert table["3x3 convolutions"] == pytest.approx(50.0)
    assert table["casts"] == pytest.approx(10.0)
    assert sum(table.values()) == pytest.approx(60.0)


def test_conv_flops_of_the_fast_net(profile) -> None:
    # 31x31 maps from 24 channels to 64, then 15x15 64 -> 64, and so on (2 per multiply-add)
    expected = 2 * 9 * (31 * 31 * 24 * 64 + 15 * 15 * 64 * 64 + 15 * 15 * 64 * 256
                        + 7 * 7 * 256 * 256 + 7 * 7 * 256 * 256 + 3 * 3 * 256 * 256)
    assert profile.conv_flops((64, 256, 256), whiten_patch=2) == expected
    assert 230e6 < expected < 240e6
    # 3x3 patches: 30x30 maps of 54 whitened channels, then 15x15, 7x7 and 3x3 again
    assert profile.conv_flops((64, 256, 256), whiten_patch=3) == expected + 2 * 9 * (
        30 * 30 * 54 * 64 - 31 * 31 * 24 * 64)


def test_the_recipe_flags_default_to_the_recipe(profile) -> None:
    from cifar_tutorial.recipes import FastHyperparameters

    parser = profile.build_parser()
    assert profile.hyperparameters_from(parser.parse_args([]), epochs=1.0) == FastHyperparameters(
        epochs=1.0)
    flags = {option for action in parser._actions for option in action.option_strings}
    fields = {f.name for f in dataclasses.fields(FastHyperparameters)}
    assert "--epochs" not in flags  # the profile runs one epoch of --steps + 1 batches
    assert {f"--{name.replace('_', '-')}" for name in fields - {"epochs"}} <= flags
    args = parser.parse_args(["--batch-size", "64", "--widths", "8,16,32", "--no-fused-norm",
                              "--lookahead-decay-base", "0.9", "--tta", "none"])
    hyp = profile.hyperparameters_from(args, epochs=1.0)
    assert (hyp.batch_size, hyp.widths, hyp.fused_norm) == (64, (8, 16, 32), False)
    assert (hyp.lookahead_decay_base, hyp.tta, hyp.lr) == (0.9, "none", FastHyperparameters().lr)
    with pytest.raises(SystemExit):
        parser.parse_args(["--widths", "8,x,32"])


def test_every_flag_has_the_field_description_as_help(profile) -> None:
    from cifar_tutorial.recipes import FastHyperparameters

    docs = sys.modules["fast_recipe"].field_docs(FastHyperparameters)  # profile_step's import
    assert set(docs) == {f.name for f in dataclasses.fields(FastHyperparameters)}
    assert docs["lr_start"].startswith("Learning rate of the first step")
    assert docs["whiten_patch"].endswith("in pixels.")
