"""The errors a user can fix, in one hierarchy (the command line, every chapter).

Every error the package raises for something the user can put right (a wrong path,
a refused option, a damaged file, a full disk, a network that diverged) derives from
:class:`CifarTutorialError`. The command line turns exactly these into a one-line
message and an exit code; anything else is a bug, shown with its traceback.

This module imports nothing from the package, so every module may import it.
"""

from __future__ import annotations

__all__ = [
    "CifarTutorialError",
    "CheckpointError",
    "DataError",
    "ImageError",
    "ModelError",
    "OutputError",
    "RunLocked",
    "TrainingDiverged",
    "TrainingError",
    "TrainingInterrupted",
    "UsageError",
]


class CifarTutorialError(Exception):
    """Base of every error the user can fix; the message says what to do.

    Attributes
    ----------
    exit_code : int
        The command line's exit status for this error (2: bad input or a fault
        the user can repair; 3: training diverged).
    """

    exit_code: int = 2


class UsageError(CifarTutorialError):
    """A command-line argument or a function argument was refused."""


class DataError(CifarTutorialError):
    """The data could not be found or read; the message says what to fix."""


class ImageError(CifarTutorialError):
    """An image file could not be read; the message names the file and the fix."""


class ModelError(CifarTutorialError):
    """A model file could not be loaded; the message names the file and the fix."""


class CheckpointError(CifarTutorialError):
    """A checkpoint cannot be resumed from; the message names the file and the ways on."""


class OutputError(CifarTutorialError):
    """A file of a run could not be written (no space, no permission); the message
    names the path and the cause."""


class RunLocked(CifarTutorialError):
    """Another live process holds the output folder; the message names it."""


class TrainingError(CifarTutorialError):
    """Training stopped before the last epoch; the message says why and what to do."""


class TrainingDiverged(TrainingError):
    """The loss became NaN, infinite or too large to recover from.

    Attributes
    ----------
    epoch : int
        The (1-based) epoch in which it happened.
    """

    exit_code = 3

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); finished epochs are kept.

    It is a :class:`KeyboardInterrupt`, so ``except Exception`` around a training
    call does not swallow the reader's Ctrl-C.

    Attributes
    ----------
    epochs_done : int
        Epochs finished and saved.
    """

    def __init__(self, message: str, epochs_done: int) -> None:
        super().__init__(message)
        self.epochs_done = epochs_done
