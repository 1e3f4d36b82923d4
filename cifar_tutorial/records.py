"""What a training run leaves behind: its history, and files written atomically.

Chapter 6 ("The seed's CNN") meets :class:`History`, which both training loops of
:mod:`cifar_tutorial.train` and the fast recipe of chapter 8 return, and which the
figures of :mod:`cifar_tutorial.plots` read. The command line writes its outputs
with :func:`atomic_save` and :func:`atomic_write_text`, so that an interrupted run
never leaves half a file, after :func:`check_output_folder` has made sure that the
folder can be written. A :class:`Checkpoint` keeps the last finished epoch of a
run, so that it can resume.

This module needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["History", "CHECKPOINT_DIR", "Checkpoint", "CheckpointError", "check_output_folder",
           "portable_path", "portable_argv"]

CHECKPOINT_DIR = "checkpoint"
"""The folder, inside a run's output folder, that holds its :class:`Checkpoint`."""


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


@dataclasses.dataclass
class Checkpoint:
    """A run's checkpoint folder: the last finished epoch and ``state.json`` naming it.

    :func:`cifar_tutorial.train.train` keeps a model's weights and optimizer state
    in ``epoch-NNNN.weights.h5`` (chapter 6); the fast recipe of chapter 8 writes a
    file of its own. ``state.json`` holds ``epochs_done``, a ``fingerprint`` of the
    run's settings, the history so far and ``weights``, the name of the epoch's
    file. Both are replaced atomically after every epoch, so that a run stopped at
    any moment (Ctrl-C, SIGKILL, a power cut) resumes from its last finished epoch.

    A non-chief worker writes into a scratch ``folder`` of its own and resumes from
    the chief's folder, ``resume_from`` (chapter 9).
    """

    folder: Path
    resume_from: Path | None = None

    def source(self) -> Checkpoint:
        """The checkpoint to resume from."""
        return Checkpoint(self.resume_from) if self.resume_from else self

    @property
    def state_path(self) -> Path:
        """``state.json`` in :attr:`folder`."""
        return self.folder / "state.json"

    def read(self) -> dict[str, Any] | None:
        """The saved state, ``None`` if no epoch has been saved.

        Raises
        ------
        CheckpointError
            If ``state.json`` cannot be read.
        """
        if not self.state_path.exists():
            return None
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(
                f"checkpoint {self.state_path} is unreadable ({err}); delete the folder "
                f"{self.folder} to start afresh"
            ) from None

    def read_run(self, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state of the run with this ``fingerprint``, ``None`` if none is saved.

        Raises
        ------
        CheckpointError
            If ``state.json`` cannot be read, or belongs to a run with other settings.
        """
        state = self.read()
        if state is not None and state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{self.folder} holds a checkpoint of a different run "
                f"({state.get('fingerprint')}); use another output folder, or "
                "start afresh with resume=False (--no-resume)"
            )
        return state

    def write_with(self, save: Callable[[str], Any], state: dict[str, Any],
                   suffix: str = ".weights.h5") -> None:
        """Save an epoch: ``save(path)`` writes its file, then ``state`` names it.

        Parameters
        ----------
        save : callable
            Writes the epoch's file at the path it is given, e.g. ``model.save_weights``.
        state : dict
            JSON-ready; must hold ``epochs_done``. ``weights`` is added.
        suffix : str
            The file's suffix (Keras checks that weights files end in ``.weights.h5``).
        """
        name = f"epoch-{state['epochs_done']:04d}{suffix}"
        atomic_save(save, self.folder / name)
        atomic_write_text(self.state_path, json.dumps({**state, "weights": name}, indent=2))
        for old in self.folder.glob("epoch-*"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def file(self, state: dict[str, Any]) -> Path:
        """The epoch's file that ``state`` names."""
        return self.folder / state["weights"]


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

