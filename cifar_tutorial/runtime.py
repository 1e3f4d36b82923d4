"""Seeds, determinism, devices, precision, and the run modes (full, quick, smoke).

A full run is the one the book's outputs come from, a quick run a reader's short
version, a smoke run the tests' tiny one.

Chapter 1 ("Classification as a task") introduces these helpers in its setup cell;
every later chapter calls them first. :func:`set_seed` is the one place where the
package seeds its random numbers, and :func:`choose_precision` the one place where
it decides between bfloat16 and float32 (chapter 9).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

import keras
import tensorflow as tf

__all__ = [
    "SMOKE_ENV",
    "QUICK_ENV",
    "smoke_mode",
    "quick_mode",
    "run_mode",
    "by_mode",
    "describe_run",
    "speed_probe",
    "Machine",
    "MACHINES",
    "set_seed",
    "cpu_flags",
    "bf16_supported",
    "PRECISIONS",
    "choose_precision",
    "describe_device",
]

PRECISIONS: tuple[str, ...] = ("float32", "mixed_bfloat16")
"""The precisions :func:`choose_precision` chooses between (Keras policy names)."""

SMOKE_ENV = "CIFAR_TUTORIAL_SMOKE"
"""Environment variable that turns the tests' smoke mode on (``1``, ``true`` or ``yes``)."""

QUICK_ENV = "CIFAR_TUTORIAL_QUICK"
"""Environment variable that turns the reader's quick mode on (``1``, ``true`` or ``yes``).

``python3 tasks.py lab --quick`` sets it for every notebook JupyterLab starts.
"""

_TRUE = {"1", "true", "yes"}


def smoke_mode() -> bool:
    """Tell whether notebooks should run in the tests' tiny smoke mode.

    The test configuration sets :data:`SMOKE_ENV` so that ``pytest --nbval`` runs
    every chapter on a few hundred images for a step or two; readers get full runs.

    Returns
    -------
    bool
        True when the variable is set to ``1``, ``true`` or ``yes``.
    """
    return os.environ.get(SMOKE_ENV, "").strip().lower() in _TRUE


def quick_mode() -> bool:
    """Tell whether a reader asked for quick runs (:data:`QUICK_ENV`).

    In quick mode every chapter trains on a subset for fewer epochs, so that it runs
    in about two minutes on two CPU cores; its numbers then differ from the book's.
    The tests' smoke mode takes precedence.

    Returns
    -------
    bool
        True when :data:`QUICK_ENV` is ``1``, ``true`` or ``yes`` and the smoke mode
        is off.
    """
    return not smoke_mode() and os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE


def run_mode() -> str:
    """Name the current mode: ``"full"``, ``"quick"`` (readers) or ``"smoke"`` (tests).

    Returns
    -------
    str
        One of ``"full"``, ``"quick"`` and ``"smoke"``.
    """
    if smoke_mode():
        return "smoke"
    return "quick" if quick_mode() else "full"


def by_mode(full: int, tiny: int, quick: int | None = None) -> int:
    """Pick a size (epochs, examples, steps) for the current mode.

    Parameters
    ----------
    full : int
        The value for a full run, the one the book's stored outputs come from.
    tiny : int
        The value for a tiny run of a few hundred images, which checks that the
        code runs (the test suite's re-runs of the notebooks).
    quick : int, optional
        The value for a reader's quick run; ``tiny`` when not given.

    Returns
    -------
    int
        The value that belongs to :func:`run_mode`.
    """
    mode = run_mode()
    if mode == "smoke":
        return tiny
    if mode == "quick":
        return tiny if quick is None else quick
    return full


@dataclasses.dataclass(frozen=True)
class Machine:
    """A CPU the book's stored outputs were made on, and its speed on the probe.

    Attributes
    ----------
    name : str
        The CPU in words, as :func:`describe_run` prints it.
    probe_images_per_s : float
        What :func:`speed_probe` measured there, images per second of processor
        time, in float32.
    """

    name: str
    probe_images_per_s: float


MACHINES: dict[str, Machine] = {
    "epyc-zen3": Machine("an AMD EPYC (Zen 3; AVX2, no bfloat16)", 300.0),
    "xeon-amx": Machine("an Intel Xeon with AMX", 600.0),
    "epyc-zen4": Machine("an AMD EPYC (Zen 4; AVX-512, bfloat16)", 818.0),
}
"""The machines whose full runs the chapters quote, by key (:func:`describe_run`).

The Zen 3 figure is the median of twelve :func:`speed_probe` calls on that
machine with nothing else running (they ranged from 250 to 346: the estimates
are good to about 15%). The Xeon's is estimated from it: the seed CNN's float32
epoch took about 19 s there against about 38 s on the Zen 3
(``../shared/reference/tooling-notes.md``), twice as fast. The Zen 4 figure is the
median of twelve calls there with nothing else running (455 to 842)."""


def speed_probe(seconds: float = 1.0) -> float:
    """Time a small convolutional training step on this machine (chapters' first cells).

    Two 3x3 convolutions (3 -> 32 -> 64 channels) on 32x32 images, pooled into ten
    logits, forward and backward in one ``tf.function``, float32, batches of 64,
    repeated for about ``seconds`` after one untimed step. It draws no random
    numbers from the seeded generators, so a chapter's results do not depend on it.

    Parameters
    ----------
    seconds : float
        How long to keep timing.

    Returns
    -------
    float
        Images per second of processor time (all threads' time added up), which
        other programs running at the same time change little: the probe measures
        the machine, not how busy it is.
    """
    import time

    import numpy as np

    rng = np.random.default_rng(12345)
    x = tf.constant(rng.random((64, 32, 32, 3), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, 64), tf.int32)
    w1 = tf.Variable(rng.normal(0, 0.1, (3, 3, 3, 32)).astype(np.float32))
    w2 = tf.Variable(rng.normal(0, 0.1, (3, 3, 32, 64)).astype(np.float32))
    w3 = tf.Variable(rng.normal(0, 0.1, (64, 10)).astype(np.float32))

    @tf.function(jit_compile=False)
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
            h = tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME"))
            logits = tf.reduce_mean(h, axis=(1, 2)) @ w3
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, [w1, w2, w3])
        for v, g in zip((w1, w2, w3), grads):
            v.assign_sub(0.01 * g)
        return loss

    step().numpy()
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or steps < 3:
        step().numpy()
        steps += 1
    return steps * 64 / (time.process_time() - cpu)


def _minutes(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes >= 100:  # "about 2.2 hours", short enough for the setup line's width
        return f"about {minutes / 60:.1f} hours"
    rounded = round(minutes) if minutes >= 3 else round(minutes, 1)
    return f"about {rounded:g} minute" + ("" if rounded == 1 else "s")


def describe_run(full_minutes: float, measured_on: str = "epyc-zen3") -> str:
    """Say in plain words how long this chapter takes, here, and how to run it quickly.

    Chapter setup cells print this line, so that a reader knows what to expect
    before training starts. Machines differ by up to ten times, so besides the
    minutes the full run took on the CPU that made the stored outputs, it estimates
    the minutes on the reader's machine from :func:`speed_probe` (about a second)
    scaled by that machine's probe (:data:`MACHINES`). The estimate holds for
    float32 training; a CPU with bfloat16 matrix units (chapter 9) may do better.

    Parameters
    ----------
    full_minutes : float
        Duration of the full run on two CPU cores of ``measured_on``, in minutes,
        including any model the chapter must train first.
    measured_on : str
        A key of :data:`MACHINES`.

    Returns
    -------
    str
        A few short lines for the current mode.
    """
    machine = MACHINES[measured_on]
    mode = run_mode()
    if mode == "smoke":
        return "Tiny run: a few hundred images for a step or two."
    length = _minutes(full_minutes)
    here = full_minutes * machine.probe_images_per_s / speed_probe()
    made = (f"Full run: {length} on 2 cores of {machine.name};\n"
            f"on this machine {_minutes(here)}.")
    if mode == "full":
        return (
            f"{made}\n"
            f"For a quick run (a subset, fewer epochs), set {QUICK_ENV}=1 or start\n"
            "JupyterLab with: python3 tasks.py lab --quick"
        )
    return (
        "Quick run: a subset, at most a few minutes; numbers will differ from\n"
        f"the book's. Unset {QUICK_ENV} for the full run.\n{made}"
    )


def set_seed(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow, and optionally make ops deterministic.

    With ``deterministic=True`` TensorFlow picks deterministic kernels
    (``tf.config.experimental.enable_op_determinism``), so that two runs with the
    same seed give bit-identical weights on the same machine (about 10% slower).
    Op determinism belongs to the whole process, and TensorFlow has no call that
    turns it off: once on, it stays on until the process (the notebook's kernel)
    ends.

    Parameters
    ----------
    seed : int
        The seed for :func:`keras.utils.set_random_seed`.
    deterministic : bool
        ``True`` turns op determinism on, for good. ``False`` leaves it as it is:
        off in a fresh process, still on after any earlier call with ``True``
        (every chapter's setup cell makes one).
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def cpu_flags() -> set[str]:
    """Return the CPU feature flags of this machine (empty where unknown).

    Returns
    -------
    set of str
        Flags as listed in ``/proc/cpuinfo`` on Linux.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_supported() -> bool:
    """Tell whether the CPU computes bfloat16 natively (AMX-BF16 or AVX512-BF16).

    Chapter 9 uses ``mixed_bfloat16`` only where this holds: elsewhere emulated
    bfloat16 is slower than float32.

    Returns
    -------
    bool
        True if a GPU is present or the CPU lists ``amx_bf16`` or ``avx512_bf16``.
    """
    if tf.config.list_physical_devices("GPU"):
        return True
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def choose_precision(precision: str = "auto") -> str:
    """Decide between bfloat16 and float32 arithmetic (chapter 9).

    ``mixed_bfloat16`` (bfloat16 computations, float32 weights) pays off where the
    hardware computes bfloat16 natively (:func:`bf16_supported`): on a 2-core
    AVX512-BF16 CPU without AMX the fast recipe trained 1.8 times as fast as in
    float32 (365 against 204 images/s). Elsewhere bfloat16 is emulated and slower,
    so ``"auto"`` keeps ``float32`` there.

    Parameters
    ----------
    precision : {"auto", "float32", "mixed_bfloat16"}
        ``"auto"`` decides for this machine; the other two are returned as given.

    Returns
    -------
    str
        ``"float32"`` or ``"mixed_bfloat16"``.

    Raises
    ------
    ValueError
        For any other name.
    """
    if precision == "auto":
        return "mixed_bfloat16" if bf16_supported() else "float32"
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; choose auto, {' or '.join(PRECISIONS)}"
        )
    return precision


def describe_device() -> str:
    """Describe what TensorFlow will compute on, in one line.

    Returns
    -------
    str
        For example ``"CPU (2 cores, x86_64)"`` or ``"1 GPU: NVIDIA H200"``.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: " + ", ".join(names)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"
