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
    assert runtime.by_mode(full=20, tiny=1, quick=5) == {"full": 20, "quick": 5, "smoke": 1}[name]
    assert runtime.by_mode(full=20, tiny=1) == (20 if name == "full" else 1)


def test_describe_run_speaks_to_readers(mode, monkeypatch) -> None:
    reference = runtime.MACHINES["epyc-zen3"]
    # a machine twice as fast as the reference on the probe
    monkeypatch.setattr(runtime, "speed_probe", lambda: 2 * reference.probe_images_per_s)
    mode("full")
    full = runtime.describe_run(10)
    assert full.startswith(f"Full run: about 10 minutes on 2 cores of {reference.name};")
    assert "on this machine about 5 minutes." in full
    assert runtime.QUICK_ENV in full and "tasks.py lab --quick" in full
    assert "under a minute" in runtime.describe_run(0.5)
    assert "about 1 minute " in runtime.describe_run(1)
    long = runtime.describe_run(150)  # chapter 11 with the training of its three models
    assert "Full run: about 2.5 hours on 2 cores" in long and "about 75 minutes." in long
    assert max(len(line) for line in long.splitlines()) <= 80
    amx = runtime.describe_run(4, "xeon-amx")
    assert runtime.MACHINES["xeon-amx"].name in amx
    mode("quick")
    quick = runtime.describe_run(10)
    assert quick.startswith("Quick run:") and "about 10 minutes" in quick
    for text in (full, quick):
        assert "smoke" not in text.lower() and "test" not in text.lower()
        assert max(len(line) for line in text.splitlines()) <= 80
    with pytest.raises(KeyError):
        runtime.describe_run(1, "a machine nobody measured")
    mode("smoke")
    assert runtime.describe_run(10) == "Tiny run: a few hundred images for a step or two."


def test_speed_probe_leaves_the_seeded_generators_alone() -> None:
    import numpy as np

    runtime.set_seed(3)
    expected = (np.random.random(), float(tf.random.uniform(())))
    runtime.set_seed(3)
    speed = runtime.speed_probe(seconds=0.05)
    assert speed > 0
    assert (np.random.random(), float(tf.random.uniform(()))) == expected


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
