"""What the benchmarks in ``bench/`` share: a run's provenance and one JSON writer.

Every result file in ``bench/results/`` is strict JSON (``null``, never ``NaN``)
written by :func:`write_json`, and carries :func:`run_metadata`: the commit it was
made from and whether the tree had uncommitted changes, the command line, the
machine (CPU model and its bfloat16 matrix extension), the library versions, the
time, and the data it read (named by its folder, and whether it is the original
PNG copy of CIFAR-10 or the old lossy JPEG one). ``bench/report.py`` prints the
benchmarks page's tables and its provenance table from these fields.

The scripts import this module as ``_common`` (``bench/`` is the first entry of
``sys.path`` when one of them runs); the tests load it the same way.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The project's root: command lines and paths are recorded relative to it."""

DATA_FORMATS: dict[str, str] = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
"""Image file suffixes and the format a result file names for them."""

SYNTHETIC_DATA: dict[str, Any] = {"name": "random pixels", "format": "synthetic", "original": None}
"""The ``data`` of a benchmark that reads no images (a step timed on random pixels)."""

VERSIONED = ("numpy", "tensorflow", "keras", "torch")
"""Packages whose installed version a result records (those installed)."""


# ------------------------------------------------------------------ paths and commands


def portable_path(path: str | os.PathLike, start: str | os.PathLike = ROOT) -> str:
    """``path`` relative to ``start`` (the project root), as result files record it.

    Written relative to the project (``../shared/data/cifar10-png``), a data folder
    reads the same on every machine and names no machine's absolute path. A path
    further away, in the user's home folder, is written from there instead
    (``~/.cache/cifar-tutorial/...``).
    """
    path = os.path.abspath(path)
    relative = os.path.relpath(path, os.path.abspath(start))
    home = os.path.expanduser("~")
    if relative.startswith(os.path.join(os.pardir, os.pardir)) and path.startswith(home + os.sep):
        return os.path.join("~", os.path.relpath(path, home))
    return relative


def portable_argv(argv: list[str], start: str | os.PathLike = ROOT) -> list[str]:
    """A command line with every absolute path (also in ``--opt=/path``) made relative."""
    def one(arg: str) -> str:
        name, eq, value = arg.partition("=")
        if eq and os.path.isabs(value):
            return f"{name}={portable_path(value, start)}"
        return portable_path(arg, start) if os.path.isabs(arg) else arg

    return [one(arg) for arg in argv]


def portable_args(args: Any, start: str | os.PathLike = ROOT) -> dict[str, Any]:
    """A script's parsed arguments (``argparse.Namespace`` or dict) as a result records
    them: every absolute path among the values, also in lists, made portable
    (:func:`portable_path` from ``start``)."""
    def one(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [one(v) for v in value]
        if isinstance(value, (str, os.PathLike)) and os.path.isabs(value):
            return portable_path(value, start)
        return value

    items = args.items() if isinstance(args, Mapping) else vars(args).items()
    return {key: one(value) for key, value in items}


# ------------------------------------------------------------------------- the machine


def matrix_extensions(flags: set[str] | None = None) -> str:
    """Name the bfloat16 matrix extension a CPU offers, the fastest first.

    Parameters
    ----------
    flags : set of str, optional
        CPU flags; this machine's (:func:`cifar_tutorial.runtime.cpu_flags`) by
        default.

    Returns
    -------
    str
        ``"AMX-BF16"`` (tile matrix units), ``"AVX512-BF16"`` (vector dot products)
        or ``"neither"``.
    """
    if flags is None:
        from cifar_tutorial.runtime import cpu_flags

        flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return "neither"


def describe_cpu(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """This machine's CPU, as every result records it beside its timings.

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_generation`` (its "cpu family" and "model" numbers,
        which tell apart generations that share a name), ``cpu_count``,
        ``cores_available`` (to this process), ``matrix_extensions``
        (:func:`matrix_extensions`), ``avx512f`` and ``platform``.
    """
    fields: dict[str, str] = {}
    path = Path(cpuinfo)
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the end of the first processor's block
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    generation = None
    if "cpu family" in fields and "model" in fields:
        generation = f"family {fields['cpu family']}, model {fields['model']}"
    return {
        "cpu_model": fields.get("model name") or platform.processor() or "unknown",
        "cpu_generation": generation,
        "cpu_count": os.cpu_count(),
        "cores_available": (len(os.sched_getaffinity(0))
                            if hasattr(os, "sched_getaffinity") else None),
        "matrix_extensions": matrix_extensions(flags),
        "avx512f": "avx512f" in flags,
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (empty where the system has none)."""
    try:
        return list(os.getloadavg())
    except OSError:
        return []


# --------------------------------------------------------------------- provenance


def git_state(root: str | os.PathLike = ROOT) -> dict[str, Any]:
    """The commit checked out at ``root`` and whether tracked files differ from it.

    Returns
    -------
    dict
        ``commit`` (full hash, ``None`` outside a git checkout) and ``dirty``
        (``True`` when a tracked file has uncommitted changes, ``None`` when
        unknown). Untracked files do not count.
    """
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True,
                                  text=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() if commit else None,
            "dirty": None if status is None else bool(status.strip())}


def describe_data(data_dir: str | os.PathLike | None) -> dict[str, Any]:
    """Name the data a benchmark read, and tell the original pixels from the JPEG copy.

    Parameters
    ----------
    data_dir : path or None
        An image folder (``train/<class>/*.png``), a zip archive of one, or
        ``None`` for TensorFlow Datasets' ``cifar10``.

    Returns
    -------
    dict
        ``name`` (the folder's or archive's base name only), ``format``
        (``"png"``, ``"jpeg"``, ``"tfds"`` or ``None`` when no image was found)
        and ``original`` (``True`` for the lossless original pixels, ``False``
        for the lossy JPEG copy, ``None`` when unknown).
    """
    if data_dir is None:
        return {"name": "tensorflow_datasets:cifar10", "format": "tfds", "original": True}
    path = Path(data_dir)
    if path.suffix.lower() == ".zip":
        fmt: str | None = "png"
    else:
        fmt = None
        for class_dir in sorted((path / "train").glob("*")):
            image = next((f for f in sorted(class_dir.iterdir())
                          if f.suffix.lower() in DATA_FORMATS), None) if class_dir.is_dir() else None
            if image is not None:
                fmt = DATA_FORMATS[image.suffix.lower()]
                break
    return {"name": path.name, "format": fmt,
            "original": None if fmt is None else fmt == "png"}


def versions() -> dict[str, str]:
    """Python's version and those of the installed packages in :data:`VERSIONED`."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def run_metadata(data_dir: str | os.PathLike | Mapping[str, Any] | None, argv: list[str] | None = None,
                 git: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where a result came from: commit, command, machine, versions, time and data.

    Parameters
    ----------
    data_dir : path, dict or None
        The data the benchmark read (see :func:`describe_data`), or its
        description as a dict (:data:`SYNTHETIC_DATA`).
    argv : list of str, optional
        The command line; ``sys.argv`` by default. Recorded with paths made
        relative to the project root.
    git : dict, optional
        :func:`git_state` taken when the run started; by default it is taken now.
        A long run passes the state from its start: the code it trained with is
        that commit's, whatever was committed while it ran.

    Returns
    -------
    dict
        ``commit``, ``dirty`` (:func:`git_state`), ``argv``, ``machine``
        (:func:`describe_cpu`), ``versions`` (:func:`versions`), ``utc`` (ISO
        8601, seconds) and ``data`` (:func:`describe_data`).
    """
    return {
        **(git_state() if git is None else dict(git)),
        "argv": portable_argv(list(sys.argv if argv is None else argv)),
        "machine": describe_cpu(),
        "versions": versions(),
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": dict(data_dir) if isinstance(data_dir, Mapping) else describe_data(data_dir),
    }


# ---------------------------------------------------------------------- strict JSON


def write_json(path: str | os.PathLike, result: Any) -> Path:
    """Write ``result`` as strict JSON to ``path``, atomically, creating its folder.

    The package's own writer (:func:`cifar_tutorial.records.atomic_write_json`):
    NaN becomes ``null``, and an interrupted run never leaves half a file.
    """
    from cifar_tutorial.records import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, result)


def read_json(path: str | os.PathLike) -> Any:
    """Read a result file, refusing the non-standard ``NaN`` and ``Infinity`` tokens."""
    def refuse(token: str) -> Any:
        raise ValueError(f"{Path(path).name}: {token} is not JSON")

    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)
