"""Seeds, run modes, precision and devices (chapter 1 onwards): cifar_tutorial.runtime."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar_tutorial import runtime


@pytest.fixture
def mode(monkeypatch):
    """Set the run mode: ``mode("smoke")``, ``mode("quick")`` or ``mode("full")``."""

    def set_mode(name: str) -> None:
        monkeypatch.setenv(runtime.SMOKE_ENV, "1" if name == "smoke" else "")
        monkeypatch.setenv(runtime.QUICK_ENV, "yes" if name in ("quick", "smoke") else "0")

    return set_mode


@pytest.mark.parametrize("name", ["full", "quick", "smoke"])
def test_run_mode_and_by_mode(mode, name: str) -> None:
    mode(name)
    assert runtime.run_mode() == name
    assert runtime.smoke_mode() is (name == "smoke")
    assert runtime.quick_mode() is (name == "quick")  # smoke takes precedence over quick
    assert runtime.by_mode(full=20, test=1, quick=5) == {"full": 20, "quick": 5, "smoke": 1}[name]
    assert runtime.by_mode(full=20, test=1) == (20 if name == "full" else 1)


def test_describe_run_speaks_to_readers(mode) -> None:
    mode("full")
    full = runtime.describe_run(10)
    assert full.startswith("Full run: about 10 minutes on 2 CPU cores")
    assert runtime.QUICK_ENV in full and "tasks.py lab --quick" in full
    assert "under a minute" in runtime.describe_run(0.5) and "1 minute " in runtime.describe_run(1)
    mode("quick")
    quick = runtime.describe_run(10)
    assert quick.startswith("Quick run:") and "the full run takes about 10 minutes" in quick
    for text in (full, quick):
        assert "smoke" not in text.lower()
    mode("smoke")
    assert runtime.describe_run(10) == "Test run: a few hundred images for a step or two."


def test_set_seed_repeats_every_random_source() -> None:
    def draw() -> tuple:
        return (np.random.rand(), keras.random.uniform((3,)).numpy().tolist(),
                tf.random.uniform((2,)).numpy().tolist())

    runtime.set_seed(5)
    first = draw()
    runtime.set_seed(5)
    assert draw() == first
    runtime.set_seed(6)
    assert draw() != first


@pytest.mark.parametrize(("flags", "gpus", "native"), [
    ({"avx512_bf16", "avx2"}, [], True),
    ({"amx_bf16"}, [], True),
    ({"avx2"}, [], False),
    ({"avx2"}, ["GPU:0"], True),
])
def test_precision_follows_the_hardware(monkeypatch, flags, gpus, native: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    assert runtime.bf16_supported() is native
    assert runtime.choose_precision() == ("mixed_bfloat16" if native else "float32")
    assert runtime.choose_precision("float32") == "float32"
    assert runtime.choose_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown precision 'float16'; choose auto, float32 or"):
        runtime.choose_precision("float16")


def test_cpu_flags_and_device_description() -> None:
    flags = runtime.cpu_flags()
    if Path("/proc/cpuinfo").exists():
        assert flags and all(flag == flag.strip() and " " not in flag for flag in flags)
    assert re.fullmatch(r"CPU \(\d+ cores, \S+\)|\d+ GPU: .+", runtime.describe_device())
