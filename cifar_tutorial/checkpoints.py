"""A run's checkpoint: its last finished epoch, written atomically, read with care.

:func:`cifar_tutorial.train.train` (chapters 7 and 8) and the fast recipe of
chapter 9 keep the last finished epoch of a run in ``out_dir/checkpoint``, so that a
run stopped at any moment (Ctrl-C, SIGKILL, a power cut) resumes from there when
started again. A :class:`Checkpoint` is that folder: ``epoch-NNNN.weights.h5`` (or
the recipe's ``.npz``) and ``state.json``, which names it and holds the run's
history and a fingerprint of its settings. Both are written under a temporary name
and renamed into place, so a kill in the middle of a write leaves the previous
epoch intact.

A checkpoint that cannot be read (a truncated or empty file, a file that is not
HDF5, a ``state.json`` that is not JSON or names a missing file) is never a
traceback: :meth:`Checkpoint.load_newest` falls back to the newest epoch file that
reads, and when none does it raises :class:`~cifar_tutorial.errors.CheckpointError`
naming the file and the two ways on (delete it, or start afresh with
``resume=False``, ``--no-resume`` on the command line).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifar_tutorial.errors import CheckpointError, TrainingInterrupted
from cifar_tutorial.records import atomic_save, atomic_write_json, check_output_folder

__all__ = ["CHECKPOINT_DIR", "LOAD_ERRORS", "Checkpoint", "epochs_saved", "interrupted",
           "open_checkpoint"]

CHECKPOINT_DIR = "checkpoint"
"""The folder, inside a run's output folder, that holds its :class:`Checkpoint`."""

_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.")

LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
"""The exceptions reading a damaged file raises. h5py raises ``OSError`` for a
truncated, empty or non-HDF5 file, Keras ``ValueError`` or ``KeyError`` for one that
holds other weights, NumPy ``BadZipFile``, ``EOFError`` or ``ValueError`` for a
damaged ``.npz``."""


def _ways_on(path: Path) -> str:
    return (f"delete {path} (or the whole folder {path.parent}), or start afresh with "
            "resume=False (--no-resume on the command line)")


@dataclasses.dataclass
class Checkpoint:
    """A run's checkpoint folder: the last finished epoch and ``state.json`` naming it.

    ``state.json`` holds ``epochs_done``, a ``fingerprint`` of the run's settings,
    ``history`` (the records so far) and ``weights``, the name of the epoch's file.

    A non-chief worker of a cluster writes into a scratch ``folder`` of its own and
    resumes from the chief's folder, ``resume_from`` (chapter 10).
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
            If ``state.json`` cannot be read or is not a checkpoint's state.
        """
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            for key in ("epochs_done", "weights", "history"):
                if key not in state:
                    raise ValueError(f"no {key!r}")
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"the checkpoint's state {self.state_path} cannot be read ({err}); "
                f"{_ways_on(self.state_path)}"
            ) from None
        return state

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

    def file(self, state: dict[str, Any]) -> Path:
        """The epoch's file that ``state`` names."""
        return self.folder / state["weights"]

    def epoch_files(self) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of every epoch file in the folder, the newest first."""
        found = []
        for path in self.folder.glob("epoch-*"):
            match = _EPOCH_FILE.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def load_newest(self, fingerprint: dict[str, Any], load: Callable[[Path], Any],
                    say: Callable[[str], Any] = print) -> dict[str, Any] | None:
        """Load the newest epoch of this run that reads; return its state.

        ``load(path)`` reads an epoch file into the model (raising one of
        :data:`LOAD_ERRORS` if it cannot). The file ``state.json`` names is tried
        first, then older epoch files of the same folder; the state returned holds
        the history up to the epoch loaded. Every file passed over is named
        through ``say``.

        Returns
        -------
        dict or None
            The state of the epoch loaded; ``None`` if no epoch was saved.

        Raises
        ------
        CheckpointError
            If ``state.json`` cannot be read or belongs to another run, or if no
            epoch file reads.
        """
        state = self.read_run(fingerprint)
        if state is None:
            return None
        done = int(state["epochs_done"])
        named = self.file(state)
        candidates = [(done, named)] + [(epoch, path) for epoch, path in self.epoch_files()
                                        if epoch < done and path != named]
        problems = []
        for epoch, path in candidates:
            try:
                load(path)
            except LOAD_ERRORS as err:
                reason = "missing" if not path.exists() else _first_line(err)
                problems.append(f"{path} ({reason})")
                continue
            if problems:
                say(f"Cannot read {'; '.join(problems)}: resuming from {path.name} instead; "
                    "the next checkpoint replaces the files passed over")
            records = state["history"]["records"][:epoch]
            return {**state, "epochs_done": epoch, "weights": path.name,
                    "history": {**state["history"], "records": records}}
        raise CheckpointError(
            f"no checkpoint in {self.folder} can be read: {'; '.join(problems)}; "
            f"{_ways_on(named)}"
        )

    def write_with(self, save: Callable[[str], Any], state: dict[str, Any],
                   suffix: str = ".weights.h5") -> list[Path]:
        """Save an epoch: ``save(path)`` writes its file, then ``state`` names it.

        Both are written under a temporary name and renamed into place. Then the
        other epoch files of the folder (the previous epoch, or a damaged file
        passed over on resuming) are deleted.

        Parameters
        ----------
        save : callable
            Writes the epoch's file at the path it is given, e.g. ``model.save_weights``.
        state : dict
            JSON-ready; must hold ``epochs_done``. ``weights`` is added.
        suffix : str
            The file's suffix (Keras checks that weights files end in ``.weights.h5``).

        Returns
        -------
        list of Path
            The files deleted.
        """
        name = f"epoch-{state['epochs_done']:04d}{suffix}"
        atomic_save(save, self.folder / name)
        atomic_write_json(self.state_path, {**state, "weights": name})
        deleted = [path for _, path in self.epoch_files() if path.name != name]
        for path in deleted:
            path.unlink(missing_ok=True)
        return deleted


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def epochs_saved(out_dir) -> int:
    """Finished epochs in the checkpoint of the run in ``out_dir``.

    0 when there is none, or when it cannot be read: training then says why.
    """
    try:
        state = Checkpoint(Path(out_dir) / CHECKPOINT_DIR).read()
    except CheckpointError:
        return 0
    return int(state["epochs_done"]) if state else 0


def open_checkpoint(out_dir, strategy=None) -> Checkpoint | None:
    """The checkpoint of a run: in ``out_dir``, or in a scratch folder on non-chief workers.

    Returns ``None`` without ``out_dir``.
    """
    from cifar_tutorial.distribute import is_chief  # imports TensorFlow

    if out_dir is None:
        return None
    folder = check_output_folder(out_dir) / CHECKPOINT_DIR
    if is_chief(strategy):
        return Checkpoint(folder)
    scratch = Path(tempfile.mkdtemp(prefix="cifar-tutorial-worker-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return Checkpoint(scratch, resume_from=folder)


def interrupted(epoch: int, done: int, checkpoint: Checkpoint | None) -> TrainingInterrupted:
    """The error for Ctrl-C in epoch ``epoch`` (0-based) after ``done`` finished epochs."""
    kept = f"{done} finished epoch{'' if done == 1 else 's'} kept"
    where = f" in {checkpoint.folder}" if checkpoint else ""
    hint = ("Run the same command again to resume." if checkpoint
            else "Pass an output folder to be able to resume.")
    return TrainingInterrupted(
        f"training interrupted during epoch {epoch + 1}; {kept}{where}. {hint}", done)
