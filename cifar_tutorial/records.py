"""What a training run leaves behind: its history, and files written atomically.

Chapter 7 ("The seed's CNN") meets :class:`History`, which both training loops of
:mod:`cifar_tutorial.train` and the fast recipe of chapter 9 return, and which the
figures of :mod:`cifar_tutorial.plots` read. The command line writes its outputs
with :func:`atomic_save`, :func:`atomic_write_text` and :func:`atomic_write_json`,
so that an interrupted run never leaves half a file and a full or read-only disk
ends the run with an :class:`~cifar_tutorial.errors.OutputError` naming the file,
after :func:`check_output_folder` has made sure that the folder can be written and
:class:`RunLock` that no other live run is using it. Every JSON file is strict JSON
(:func:`to_json`: ``null`` where a value is missing, never ``NaN``). A run's
checkpoint, written with the same functions, is in :mod:`cifar_tutorial.checkpoints`.

This module needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import gc
import json
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cifar_tutorial.errors import OutputError, RunLocked

__all__ = ["History", "LOCK_FILE", "RunLock", "check_output_folder", "json_ready", "to_json"]


LOCK_FILE = ".run.lock"
"""The file, inside a run's output folder, that a :class:`RunLock` holds."""


@dataclasses.dataclass
class History:
    """Per-epoch metrics of one training run, the same for ``fit`` and custom loops.

    Attributes
    ----------
    records : list of dict
        One dict per finished epoch with ``epoch`` (1-based), ``loss``,
        ``accuracy``, ``val_loss``, ``val_accuracy`` (NaN without validation data),
        ``lr`` and ``seconds``. A trainer may add keys of its own (the fast recipe
        adds ``images_per_s`` and ``cpu_per_wall``).
    stopped_early : bool
        Whether early stopping ended the run before its last epoch.
    summary : dict
        Figures about the whole run rather than one epoch (the fast recipe's
        training time and final accuracies on its held-out images, under
        ``<heldout>_accuracy``: the validation split from the command line, the
        test set in the benchmark); empty for the other trainers.
    """

    records: list[dict[str, float]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[float]:
        """Return one metric over the epochs, e.g. ``history["val_accuracy"]``."""
        return [r[key] for r in self.records]

    @property
    def keys(self) -> list[str]:
        """The metrics recorded."""
        return list(self.records[0]) if self.records else []

    def last(self, key: str) -> float:
        """The metric's value after the last epoch."""
        return self.records[-1][key]

    def to_dict(self) -> dict[str, Any]:
        """A dict ready for strict JSON: a missing value (NaN, such as ``val_loss``
        without validation data) is ``None``, which JSON writes as ``null``."""
        out: dict[str, Any] = {"records": self.records, "stopped_early": self.stopped_early}
        if self.summary:
            out["summary"] = self.summary
        return json_ready(out)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Rebuild from :meth:`to_dict`'s output; a record's ``None`` is NaN again."""
        return cls(
            records=[{k: math.nan if v is None else v for k, v in r.items()}
                     for r in d["records"]],
            stopped_early=d.get("stopped_early", False),
            summary=dict(d.get("summary", {})),
        )

    def save(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``history.json`` (strict JSON) and ``history.csv`` atomically into ``out_dir``.

        Returns
        -------
        tuple of Path
            The two files.

        Raises
        ------
        OutputError
            If a file cannot be written (see :func:`atomic_save`).
        """
        out = Path(out_dir)
        json_path = atomic_write_json(out / "history.json", self.to_dict())
        rows = [",".join(self.keys)] + [
            ",".join(repr(r[k]) for k in self.keys) for r in self.records
        ]
        csv_path = atomic_write_text(out / "history.csv", "\n".join(rows) + "\n")
        return json_path, csv_path


# --------------------------------------------------------------------------- strict JSON


def json_ready(value: Any) -> Any:
    """``value`` in the types strict JSON holds, with ``None`` for a missing number.

    NaN and the infinities become ``None`` (``null``); NumPy scalars and arrays
    become Python numbers and lists (through their ``tolist``); tuples become
    lists and dict keys strings. Anything else is returned unchanged.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    as_python = getattr(value, "tolist", None)  # NumPy scalars and arrays
    return value if as_python is None else json_ready(as_python())


def to_json(value: Any) -> str:
    """``value`` as strict JSON text (indented by 2), which ``jq`` and ``JSON.parse`` read.

    Raises
    ------
    ValueError
        If something in ``value`` is still not JSON after :func:`json_ready`.
    """
    return json.dumps(json_ready(value), indent=2, allow_nan=False)


# --------------------------------------------------------------------------- atomic files

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_SPACE_MARGIN = 256 * 1024
"""Bytes added to a file's expected size (HDF5's own bookkeeping, a zip's index)."""
_hdf5_failed = False


def hdf5_write_failed() -> bool:
    """Whether writing an HDF5 file (``.h5``, e.g. ``model.save_weights``) failed here.

    h5py cannot recover from a failed write: the process then crashes when it ends,
    while the library closes its files. The command line ends such a process at
    once, after its message (:func:`cifar_tutorial.cli.main`).
    """
    return _hdf5_failed


def _output_error(path: Path, err: OSError) -> OutputError:
    """The error that names ``path``, the cause in words and what to do."""
    cause = os.strerror(err.errno) if err.errno else (str(err).splitlines() or ["unknown"])[0]
    if err.errno in _NO_SPACE:
        fix = "free some space on its disk or choose another output folder"
    elif err.errno in _NO_PERMISSION:
        fix = "make the folder writable or choose another output folder"
    else:
        fix = "check the disk and the folder"
    return OutputError(f"cannot write {path} ({cause}); {fix}, then run the same command "
                       "again (finished epochs are kept)")


def _variables_bytes(owner: Any) -> int:
    """Bytes of a Keras model's weights and optimizer state, 0 for anything else."""
    optimizer = getattr(owner, "optimizer", None)
    variables = [*getattr(owner, "weights", ()), *getattr(optimizer, "variables", ())]
    total = 0
    for variable in variables:
        bits = "".join(ch for ch in str(getattr(variable, "dtype", "")) if ch.isdigit())
        total += math.prod(getattr(variable, "shape", ())) * (int(bits or 32) // 8)
    return total


def _check_space(path: Path, save: Callable[[str], Any], size_hint: int | None) -> None:
    """Refuse to start a write that cannot fit on the disk (h5py must not run out)."""
    guesses = [size_hint or 0, _variables_bytes(getattr(save, "__self__", None))]
    suffix = "".join(path.suffixes)
    if suffix:  # the file it replaces, or the previous epoch's
        guesses += [p.stat().st_size for p in path.parent.glob(f"*{suffix}") if p.is_file()]
    if not max(guesses):
        return
    needed = max(guesses) + _SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OutputError(
            f"cannot write {path}: about {needed / 1e6:.1f} MB needed, {free / 1e6:.1f} MB "
            "free on its disk; free some space or choose another output folder, then run "
            "the same command again (finished epochs are kept)"
        )


def _from_h5py(tb: Any) -> bool:
    return any("h5py" in frame.f_code.co_filename for frame, _ in traceback.walk_tb(tb))


@contextlib.contextmanager
def _h5py_reports_dropped() -> Iterator[None]:
    """Drop the tracebacks h5py prints when the objects of a failed write are freed.

    h5py reports the failure again from its objects' destructors, through
    ``sys.excepthook`` and ``sys.unraisablehook``; the :class:`OutputError` already
    says it. Other reports pass on to the hooks in place.
    """
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def on_exception(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not _from_h5py(tb):
            excepthook(kind, value, tb)

    def on_unraisable(unraisable: Any) -> None:
        if "h5py" not in repr(unraisable.object) and not _from_h5py(unraisable.exc_traceback):
            unraisablehook(unraisable)

    sys.excepthook, sys.unraisablehook = on_exception, on_unraisable
    try:
        yield
    finally:
        sys.excepthook, sys.unraisablehook = excepthook, unraisablehook


def atomic_save(save: Callable[[str], Any], path: str | os.PathLike,
                size_hint: int | None = None) -> Path:
    """Call ``save(tmp_path)`` and move the file into place atomically.

    The disk's free space is checked first against the file's expected size:
    ``size_hint``, the size of the file it replaces or of another file with its
    suffix (the previous epoch's), or, when ``save`` is a Keras model's ``save``
    or ``save_weights``, its weights and optimizer state.

    Parameters
    ----------
    save : callable
        Writes a file at the path it is given, e.g. ``model.save``.
    path : path
        Destination; its suffix is kept for the temporary file (Keras checks it).
    size_hint : int, optional
        The file's expected size in bytes.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If the file cannot be written (no space, no permission, a read-only disk);
        the file it would replace is left as it was.
    """
    global _hdf5_failed
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _output_error(path.parent, err) from None
    _check_space(path, save, size_hint)
    suffix = "".join(path.suffixes)
    tmp = path.parent / f".{path.name.removesuffix(suffix)}.tmp{suffix}"
    failure = None
    with _h5py_reports_dropped():
        try:
            try:
                save(str(tmp))
            except OSError as err:
                _hdf5_failed = _hdf5_failed or suffix.endswith(".h5")
                failure = _output_error(path, err)
            if failure is None:
                os.replace(tmp, path)
        except OSError as err:
            failure = _output_error(path, err)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if failure is not None:
            with contextlib.suppress(OSError):  # a read-only disk holds no temporary file
                tmp.unlink(missing_ok=True)
            gc.collect()  # h5py's objects of the failed write are freed here, quietly
    if failure is not None:
        raise failure
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half.

    Parameters
    ----------
    path : path
        Destination.
    text : str
        Content.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If the file cannot be written (see :func:`atomic_save`).
    """

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_save(write, path, size_hint=len(text.encode()))


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` to ``path`` as strict JSON (:func:`to_json`) with
    :func:`atomic_write_text`, and return ``path``."""
    return atomic_write_text(path, to_json(value) + "\n")


def check_output_folder(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and check that files can be written in it.

    Called before any training, so that a bad folder costs seconds, not an epoch.

    Parameters
    ----------
    out_dir : path
        The output folder.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    OutputError
        If the folder cannot be created or written (a path under a file, a
        read-only disk, no permission).
    """
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"  # workers may share the folder
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise OutputError(
            f"cannot write to output folder {path} ({err.strerror or err}); "
            "choose a folder you can write to"
        ) from None
    return path


# --------------------------------------------------------------------------- one run per folder


class RunLock:
    """One live run per output folder: ``with RunLock(out): ...`` (the command line).

    The lock is ``fcntl.flock`` on :data:`LOCK_FILE`, which holds the owner's
    process id. The kernel lets it go when the process ends, however it ends, so
    a file left by a killed run blocks nothing. Leaving the ``with`` block removes
    the file. Where the file system cannot lock (some network disks), the run goes
    on unlocked.

    Raises
    ------
    RunLocked
        On entering, if another live process holds the folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise _output_error(self.path, err) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _lock_owner(fd)
                os.close(fd)
                raise RunLocked(
                    f"{self.path.parent} is in use by another run ({owner}); wait for it "
                    "to end or stop it, or choose another output folder"
                ) from None
            except OSError:  # no locks on this file system
                os.close(fd)
                return self
            try:  # its last owner may have removed the file between open and flock
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
            else:
                os.close(fd)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # first: a newcomer then finds a new file
            os.close(self._fd)
            self._fd = None


def _lock_owner(fd: int) -> str:
    """"process N", read from a lock file (its owner writes it right after locking)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return f"process {text}"
        time.sleep(0.05)
    return "a process that has not written its id yet"

