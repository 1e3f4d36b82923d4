"""bench/profile_step.py: sorting the profiler's ops into what they do, and the FLOP count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def profile():
    spec = importlib.util.spec_from_file_location("profile_step",
                                                  ROOT / "bench" / "profile_step.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile_step"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["profile_step"]


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
    assert profile.conv_flops((64, 256, 256)) == expected
    assert 230e6 < expected < 240e6
