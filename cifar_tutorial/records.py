"""What a training run leaves behind: its history, and files written atomically.

Chapter 6 ("The seed's CNN") meets :class:`History`, which both training loops of
:mod:`cifar_tutorial.train` and the fast recipe of chapter 8 return, and which the
figures of :mod:`cifar_tutorial.plots` read. The command line writes its outputs
with :func:`atomic_save` and :func:`atomic_write_text`, so that an interrupted run
never leaves half a file, after :func:`check_output_folder` has made sure that the
folder can be written. A run's checkpoint, written with the same functions, is in
:mod:`cifar_tutorial.checkpoints`.

This module needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["History", "CheckpointError", "check_output_folder",
           "portable_path", "portable_argv"]

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
        training time and final test accuracies); empty for the other trainers.
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
        """A JSON-ready dict."""
        out: dict[str, Any] = {"records": self.records, "stopped_early": self.stopped_early}
        if self.summary:
            out["summary"] = self.summary
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(
            records=[dict(r) for r in d["records"]],
            stopped_early=d.get("stopped_early", False),
            summary=dict(d.get("summary", {})),
        )

    def save(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``history.json`` and ``history.csv`` atomically into ``out_dir``.

        Returns
        -------
        tuple of Path
            The two files.
        """
        out = Path(out_dir)
        json_path = atomic_write_text(out / "history.json", json.dumps(self.to_dict(), indent=2))
        rows = [",".join(self.keys)] + [
            ",".join(repr(r[k]) for k in self.keys) for r in self.records
        ]
        csv_path = atomic_write_text(out / "history.csv", "\n".join(rows) + "\n")
        return json_path, csv_path


def atomic_save(save: Callable[[str], Any], path: str | os.PathLike) -> Path:
    """Call ``save(tmp_path)`` and move the file into place atomically.

    Parameters
    ----------
    save : callable
        Writes a file at the path it is given, e.g. ``model.save``.
    path : path
        Destination; its suffix is kept for the temporary file (Keras checks it).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    tmp = path.parent / f".{path.name.removesuffix(suffix)}.tmp{suffix}"
    try:
        save(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
    """

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_save(write, path)


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
    ValueError
        If the folder cannot be created or written (e.g. a path under a file).
    """
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"  # workers may share the folder
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ValueError(
            f"cannot write to output folder {path} ({err.strerror or err}); "
            "choose a folder you can write to"
        ) from None
    return path


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed from; the message says what to do instead."""


def portable_path(path: str | os.PathLike, start: str | os.PathLike = ".") -> str:
    """``path`` relative to ``start`` (the project root), as results files record it.

    A benchmark's JSON names its data folder; written relative to the project
    (``../shared/data/cifar10-jpeg``) it says the same on every machine and holds
    no machine's absolute path.
    """
    return os.path.relpath(os.path.abspath(path), os.path.abspath(start))


def portable_argv(argv: list[str], start: str | os.PathLike = ".") -> list[str]:
    """A command line with every absolute path (also in ``--opt=/path``) made relative."""
    def one(arg: str) -> str:
        name, eq, value = arg.partition("=")
        if eq and os.path.isabs(value):
            return f"{name}={portable_path(value, start)}"
        return portable_path(arg, start) if os.path.isabs(arg) else arg

    return [one(arg) for arg in argv]

