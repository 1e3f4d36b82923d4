"""Seeds, determinism, devices, precision, and the run modes (full, quick, smoke).

A full run is the one the book's outputs come from, a quick run a reader's short
version, a smoke run the tests' tiny one.

Chapter 1 ("Classification as a task") introduces these helpers in its setup cell;
every later chapter calls them first. :func:`set_seed` is the one place where the
package seeds its random numbers, and :func:`choose_precision` the one place where
it decides between bfloat16 and float32 (chapter 9).
"""

from __future__ import annotations

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


def by_mode(full: int, test: int, quick: int | None = None) -> int:
    """Pick a size (epochs, examples, steps) for the current mode.

    Parameters
    ----------
    full : int
        The value for a full run, the one the book's stored outputs come from.
    test : int
        The value for the test suite's short re-runs of the notebooks.
    quick : int, optional
        The value for a reader's quick run; ``test`` when not given.

    Returns
    -------
    int
        The value that belongs to :func:`run_mode`.
    """
    mode = run_mode()
    if mode == "smoke":
        return test
    if mode == "quick":
        return test if quick is None else quick
    return full


def describe_run(full_minutes: float) -> str:
    """Say in plain words how long this chapter takes and how to run it quickly.

    Chapter setup cells print this line, so that a reader knows what to expect
    before training starts.

    Parameters
    ----------
    full_minutes : float
        Duration of the full run on two CPU cores, in minutes.

    Returns
    -------
    str
        One or two sentences for the current mode.
    """
    if full_minutes < 1:
        length = "under a minute"
    else:
        length = f"about {full_minutes:g} minute" + ("" if full_minutes == 1 else "s")
    mode = run_mode()
    if mode == "full":
        return (
            f"Full run: {length} on 2 CPU cores, as in the book.\n"
            f"For a quick run (a subset, fewer epochs), set {QUICK_ENV}=1 or start\n"
            "JupyterLab with: python3 tasks.py lab --quick"
        )
    if mode == "quick":
        return (
            "Quick run: a subset, at most about 2 minutes on 2 CPU cores;\n"
            f"the full run takes {length}. Numbers will differ from the book's.\n"
            f"Unset {QUICK_ENV} for the full run."
        )
    return "Test run: a few hundred images for a step or two."


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
        return f"{len(gpus)} GPU: " + ", ".join(names)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"
