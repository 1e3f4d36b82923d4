"""Training: Keras ``fit`` and a ``tf.GradientTape`` loop behind one interface.

Chapter 6 ("The seed's CNN") trains with :func:`train` and ``loop="fit"``;
chapter 7 ("A custom training loop") opens the ``loop="custom"`` path, whose step is
:func:`cifar_tutorial.steps.make_train_step` (also reachable as
``train.make_train_step``). Both

- run one epoch at a time on a data order drawn from ``seed + epoch``, so that a
  resumed run sees exactly the batches an uninterrupted run would have seen;
- write a checkpoint after every finished epoch (weights, optimizer state and
  history; atomically) when given ``out_dir``, and resume from it when started
  again with the same settings;
- stop with :class:`TrainingDiverged` when the loss turns NaN, infinite or huge, keeping
  the last good checkpoint, and with :class:`TrainingInterrupted` on Ctrl-C;
- accept a ``tf.distribute`` strategy (chapter 9).

They return a :class:`cifar_tutorial.records.History` (also reachable as
``train.History``).
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_tutorial.data import CifarData
from cifar_tutorial.distribute import (
    is_chief,
    is_multi_worker,
    shard_by_data,
    workers_disagreement,
)
from cifar_tutorial.models import outputs_logits
from cifar_tutorial.records import (
    CHECKPOINT_DIR,
    Checkpoint,
    CheckpointError,
    History,
    check_output_folder,
)
from cifar_tutorial.steps import label_mode_of, make_eval_step, make_train_step

__all__ = [
    "DIVERGED_LOSS",
    "METRICS",
    "TrainingError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "compile_model",
    "check_training_args",
    "train",
]

DIVERGED_LOSS = 1e4
"""A mean loss above this counts as diverged, like NaN. Cross-entropy starts near
``ln 10 = 2.3``, and a finite loss of 1e21 (Adam with a learning rate of 1000) means
the weights have blown up for good."""
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class TrainingError(RuntimeError):
    """Training stopped before the last epoch; the message says why and what to do."""


class TrainingDiverged(TrainingError):
    """The loss became NaN, infinite or larger than :data:`DIVERGED_LOSS`.

    Attributes
    ----------
    epoch : int
        The (1-based) epoch in which it happened.
    """

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


class TrainingInterrupted(TrainingError):
    """Training was interrupted (Ctrl-C); finished epochs are kept.

    Attributes
    ----------
    epochs_done : int
        Epochs finished and saved.
    """

    def __init__(self, message: str, epochs_done: int) -> None:
        super().__init__(message)
        self.epochs_done = epochs_done

    @classmethod
    def during(cls, epoch: int, done: int, checkpoint: Checkpoint | None) -> TrainingInterrupted:
        """The error for Ctrl-C in epoch ``epoch`` (0-based) after ``done`` finished epochs."""
        kept = f"{done} finished epoch{'' if done == 1 else 's'} kept"
        where = f" in {checkpoint.folder}" if checkpoint else ""
        hint = (
            "Run the same command again to resume."
            if checkpoint
            else "Pass an output folder to be able to resume."
        )
        return cls(f"training interrupted during epoch {epoch + 1}; {kept}{where}. {hint}", done)


# --------------------------------------------------------------------------- compiling


def compile_model(
    model: keras.Model,
    *,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-4,
    optimizer: str = "adam",
    label_mode: str = "sparse",
    label_smoothing: float = 0.0,
    weight_decay: float | None = None,
) -> keras.Model:
    """Compile with cross-entropy matching the labels and the model's head (chapter 6).

    Parameters
    ----------
    model : keras.Model
        Built by :mod:`cifar_tutorial.models`.
    learning_rate : float or schedule
        The seed article used Adam with ``1e-4``.
    optimizer : {"adam", "adamw", "sgd"}
        ``"sgd"`` means SGD with Nesterov momentum 0.9.
    label_mode : {"sparse", "onehot"}
        Integer labels use sparse categorical cross-entropy, one-hot rows the
        categorical one (chapter 2).
    label_smoothing : float
        Label smoothing (one-hot only in Keras, so it forces ``"onehot"`` labels).
    weight_decay : float, optional
        Decoupled weight decay for ``"adamw"`` and ``"sgd"``.

    Returns
    -------
    keras.Model
        The same model, compiled, with ``jit_compile=False`` (XLA is slower on CPU).
    """
    if label_mode not in ("sparse", "onehot"):
        raise ValueError(f"label_mode must be 'sparse' or 'onehot', got {label_mode!r}")
    if label_smoothing and label_mode != "onehot":
        raise ValueError("label smoothing needs label_mode='onehot'")
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    logits = outputs_logits(model)
    if label_mode == "sparse":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    else:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=logits, label_smoothing=label_smoothing
        )
    if optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate)
    elif optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 0.004)
    elif optimizer == "sgd":
        opt = keras.optimizers.SGD(
            learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose adam, adamw or sgd")
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"], jit_compile=False)
    return model


def _custom_evaluate(step: Callable, dataset, strategy) -> dict:
    totals = np.zeros(3)
    for batch in strategy.experimental_distribute_dataset(dataset):
        totals += [float(v) for v in step(batch)]
    return {"val_loss": totals[0] / totals[2], "val_accuracy": totals[1] / totals[2]}


def _custom_epoch(step: Callable, dataset, strategy, max_steps: int | None, guard: _NaNGuard,
                  bar: keras.utils.Progbar | None = None) -> dict:
    strategy = strategy or tf.distribute.get_strategy()
    loss_sum = correct = count = 0.0
    for i, batch in enumerate(strategy.experimental_distribute_dataset(dataset)):
        if max_steps is not None and i >= max_steps:
            break
        s, c, n = (float(v) for v in step(batch))
        if _diverged(s / max(n, 1.0)):
            guard.bad_batch = i
            break
        loss_sum, correct, count = loss_sum + s, correct + c, count + n
        if bar is not None:
            bar.update(i + 1, [("loss", loss_sum / count), ("accuracy", correct / count)])
    if guard.bad_batch is not None or count == 0:
        return {"loss": float("nan"), "accuracy": float("nan")}
    return {"loss": loss_sum / count, "accuracy": correct / count}


# --------------------------------------------------------------------------- callbacks


def _diverged(loss: float) -> bool:
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


class _NaNGuard(keras.callbacks.Callback):
    """Stop ``fit`` at the first batch whose loss is not finite or explodes."""

    def __init__(self) -> None:
        super().__init__()
        self.bad_batch: int | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and _diverged(float(loss)):
            self.bad_batch = batch
            self.model.stop_training = True


class _BatchProgress(keras.callbacks.Callback):
    """A progress bar within each epoch (for terminals)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.bar: keras.utils.Progbar | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.bar = keras.utils.Progbar(self.steps, stateful_metrics=["loss", "accuracy"])

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.update(batch + 1, [(k, float(v)) for k, v in (logs or {}).items()])


# --------------------------------------------------------------------------- checkpoints


def _restore(checkpoint: Checkpoint, model: keras.Model, state: dict) -> None:
    """Load the epoch's weights and optimizer state that ``state`` names into ``model``."""
    # The weights file holds the optimizer's state, learning rate included; keep
    # the learning rate the caller compiled with (e.g. a smaller one to go on).
    optimizer = model.optimizer
    lr = None
    if optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        if isinstance(optimizer.learning_rate, keras.Variable):
            lr = keras.ops.convert_to_numpy(optimizer.learning_rate)
    model.load_weights(checkpoint.file(state))
    if lr is not None:
        optimizer.learning_rate.assign(lr)


def _fingerprint(model: keras.Model, loop: str, batch_size: int, seed: int, label_mode: str) -> dict:
    return {
        "model": model.name,
        "parameters": int(model.count_params()),
        "loop": loop,
        "batch_size": batch_size,
        "seed": seed,
        "label_mode": label_mode,
    }


# --------------------------------------------------------------------------- train


SHORT_NAMES = {"accuracy": "acc", "val_accuracy": "val_acc"}
"""Names of :data:`METRICS` in the one-line epoch log, so that a line fits 78 columns."""


def _format_epoch(record: dict, epochs: int) -> str:
    parts = [f"Epoch {int(record['epoch'])}/{epochs}", f"{record['seconds']:.1f}s"]
    for key in METRICS:
        value = record.get(key)
        if value is not None and not math.isnan(value):
            parts.append(f"{SHORT_NAMES.get(key, key)} {value:.4f}")
    return "  ".join(parts)


def check_training_args(epochs: int, batch_size: int, num_train: int) -> None:
    """Refuse bad training arguments before any work starts.

    Raises
    ------
    ValueError
        If ``epochs`` or ``batch_size`` is not positive, or the batch is larger
        than the training set.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs <= 0:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size > num_train:
        raise ValueError(
            f"batch_size {batch_size} is larger than the training set ({num_train} images); "
            "use a smaller batch"
        )


def train(
    model: keras.Model,
    data: CifarData,
    *,
    epochs: int,
    batch_size: int = 32,
    loop: str = "fit",
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    seed: int = 0,
    augment: Callable | None = None,
    early_stopping: int | None = None,
    strategy=None,
    max_steps_per_epoch: int | None = None,
    verbose: int = 1,
) -> History:
    """Train a compiled model on ``data`` for ``epochs`` epochs (chapters 6 and 7).

    Parameters
    ----------
    model : keras.Model
        A model compiled with :func:`compile_model` (under ``strategy.scope()``
        when a strategy is given).
    data : CifarData
        The data; validation metrics are computed when it has a validation split.
    epochs : int
        Total number of epochs (a resumed run trains only the missing ones).
    batch_size : int
        Global batch size, split across replicas by the strategy.
    loop : {"fit", "custom"}
        Keras ``fit`` or the ``tf.GradientTape`` loop of :func:`make_train_step`.
    out_dir : path, optional
        Folder for the per-epoch checkpoint (``out_dir/checkpoint``).
    resume : bool
        Continue from a checkpoint in ``out_dir`` if there is one.
    seed : int
        Epoch ``e`` (0-based) shuffles and augments with ``seed + e``.
    augment : callable, optional
        Per-image augmentation, see :func:`cifar_tutorial.data.flip_and_translate`.
    early_stopping : int, optional
        Stop when ``val_loss`` has not improved for this many epochs, and go back
        to the best weights.
    strategy : tf.distribute.Strategy, optional
        Distribution strategy (chapter 9).
    max_steps_per_epoch : int, optional
        Cut epochs short (smoke tests).
    verbose : int
        0 silent, 1 one line per epoch, 2 also a progress bar within epochs.

    Returns
    -------
    History
        The metrics of every finished epoch, including resumed ones.

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN, infinite or huge; the last good weights are put
        back into ``model`` (and stay in the checkpoint).
    TrainingInterrupted
        On Ctrl-C; finished epochs stay in the checkpoint.
    """
    if loop not in ("fit", "custom"):
        raise ValueError(f"loop must be 'fit' or 'custom', got {loop!r}")
    check_training_args(epochs, batch_size, len(data.y_train))
    label_mode = label_mode_of(model)
    where = strategy or tf.distribute.get_strategy()
    if loop == "fit" and is_multi_worker(where):
        raise ValueError(
            f"Keras {keras.__version__} cannot fit under MultiWorkerMirroredStrategy (its "
            "first-batch build step reduces the (images, labels) pair, which that strategy "
            "refuses); train with loop='custom' (--loop custom)"
        )
    checkpoint = _open_checkpoint(out_dir, strategy)
    fingerprint = _fingerprint(model, loop, batch_size, seed, label_mode)
    history = _resume(model, checkpoint, fingerprint, where, resume=resume, verbose=verbose)
    epoch_runner = _Epochs(
        model, data, loop=loop, batch_size=batch_size, label_mode=label_mode, seed=seed,
        augment=augment, strategy=strategy, max_steps=max_steps_per_epoch, verbose=verbose,
    )
    stopper = _EarlyStopping(early_stopping if len(data.y_val) > 0 else None, history)

    for epoch in range(len(history), epochs):
        record = epoch_runner.run(epoch, history, checkpoint)
        history.records.append({"epoch": epoch + 1, **record})
        if verbose:
            print(_format_epoch(history.records[-1], epochs), flush=True)
        stop = stopper.update(model, record["val_loss"], epoch + 1)
        history.stopped_early = history.stopped_early or stop
        if checkpoint is not None:
            checkpoint.write_with(
                model.save_weights,
                {"epochs_done": len(history), "fingerprint": fingerprint, "history": history.to_dict()},
            )
        if stop:
            stopper.restore_best(model)
            if verbose:
                print(f"Early stop: no better val_loss for {early_stopping} epochs; "
                      f"weights of epoch {stopper.best_epoch} restored")
            break

    if checkpoint is not None and not is_chief(strategy):
        shutil.rmtree(checkpoint.folder, ignore_errors=True)
    return history


def _open_checkpoint(out_dir: str | os.PathLike | None, strategy) -> Checkpoint | None:
    """The checkpoint of a run: in ``out_dir``, or in a scratch folder on non-chief workers."""
    if out_dir is None:
        return None
    folder = check_output_folder(out_dir) / CHECKPOINT_DIR
    if is_chief(strategy):
        return Checkpoint(folder)
    scratch = Path(tempfile.mkdtemp(prefix="cifar-tutorial-worker-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return Checkpoint(scratch, resume_from=folder)


def _resume(
    model: keras.Model, checkpoint: Checkpoint | None, fingerprint: dict, strategy, *,
    resume: bool, verbose: int,
) -> History:
    """Restore the checkpoint of the same run into ``model``; return the epochs it holds."""
    state = source = None
    if checkpoint is not None and resume:
        source = checkpoint.source()
        try:
            state = source.read_run(fingerprint)
        except CheckpointError as err:
            raise TrainingError(str(err)) from None
    if is_multi_worker(strategy):  # before restoring, which the workers must all do or skip
        problem = workers_disagreement(strategy, state["epochs_done"] if state else 0)
        if problem:
            raise TrainingError(problem)
    if state is None:
        return History()
    with strategy.scope():  # builds the optimizer's variables
        _restore(source, model, state)
    history = History.from_dict(state["history"])
    if verbose:
        print(f"Resuming after epoch {len(history)} from {source.folder.name}/")
    return history


class _Epochs:
    """Train and validate one epoch at a time, as :func:`train` was asked to."""

    def __init__(
        self, model: keras.Model, data: CifarData, *, loop: str, batch_size: int,
        label_mode: str, seed: int, augment: Callable | None, strategy, max_steps: int | None,
        verbose: int,
    ) -> None:
        self.model, self.data, self.loop = model, data, loop
        self.batch_size, self.label_mode, self.seed, self.augment = batch_size, label_mode, seed, augment
        self.strategy = strategy  # as given: None means one device, no sharding
        self.where = strategy or tf.distribute.get_strategy()
        self.max_steps, self.verbose = max_steps, verbose
        self.step = make_train_step(model, strategy) if loop == "custom" else None
        self.eval_step = make_eval_step(model, self.where) if is_multi_worker(self.where) else None
        self.val_ds = None
        if len(data.y_val) > 0:
            self.val_ds = self._shard(data.dataset("val", batch_size, label_mode=label_mode))

    def _shard(self, dataset):
        return dataset if self.strategy is None else shard_by_data(dataset)

    def run(self, epoch: int, history: History, checkpoint: Checkpoint | None) -> dict:
        """Train epoch ``epoch`` (0-based); return its record without ``epoch``.

        Raises :class:`TrainingInterrupted` on Ctrl-C and :class:`TrainingDiverged`
        (after putting the last good weights back) when the loss blows up.
        """
        train_ds = self._shard(self.data.dataset(
            "train", self.batch_size, label_mode=self.label_mode, seed=self.seed + epoch,
            augment=self.augment,
        ))
        guard = _NaNGuard()
        start = time.perf_counter()
        try:
            record = self._fit(train_ds, guard) if self.loop == "fit" else _custom_epoch(
                self.step, train_ds, self.where, self.max_steps, guard, self._progress_bar())
            if guard.bad_batch is None and not _diverged(record["loss"]) and self.val_ds is not None:
                record.update(self._validate())
        except KeyboardInterrupt:
            raise TrainingInterrupted.during(epoch, len(history), checkpoint) from None
        if guard.bad_batch is not None or _diverged(record["loss"]):
            _restore_last_good(self.model, checkpoint, history)
            raise _diverged_error(self.model, epoch, guard.bad_batch, checkpoint, len(history))
        record.setdefault("val_loss", float("nan"))
        record.setdefault("val_accuracy", float("nan"))
        record["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record["seconds"] = time.perf_counter() - start
        return record

    def _steps(self) -> int:
        steps = math.ceil(len(self.data.y_train) / self.batch_size)
        return min(steps, self.max_steps or steps)

    def _progress_bar(self) -> keras.utils.Progbar | None:
        """A progress bar for one epoch of the custom loop (verbose 2, terminals)."""
        if self.verbose < 2:
            return None
        return keras.utils.Progbar(self._steps(), stateful_metrics=["loss", "accuracy"])

    def _fit(self, train_ds, guard: _NaNGuard) -> dict:
        callbacks: list[keras.callbacks.Callback] = [guard]
        if self.verbose >= 2:
            callbacks.append(_BatchProgress(self._steps()))
        if self.max_steps is not None:
            train_ds = train_ds.take(self.max_steps)
        logs = self.model.fit(
            train_ds, epochs=1, verbose=0, shuffle=False, callbacks=callbacks
        ).history
        return {k: float(v[-1]) for k, v in logs.items() if k in ("loss", "accuracy")}

    def _validate(self) -> dict:
        if self.eval_step is not None:
            return _custom_evaluate(self.eval_step, self.val_ds, self.where)
        scores = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)
        return {"val_loss": float(scores["loss"]), "val_accuracy": float(scores["accuracy"])}


def _diverged_error(
    model: keras.Model, epoch: int, bad_batch: int | None, checkpoint: Checkpoint | None, done: int
) -> TrainingDiverged:
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    kept = (
        f"The last good weights (epoch {done}) are kept in {checkpoint.folder}."
        if checkpoint and done
        else "No epoch had finished, so no weights were kept."
    )
    return TrainingDiverged(
        f"the loss diverged (NaN, infinite or above {DIVERGED_LOSS:g}) in epoch {epoch + 1}"
        f"{'' if bad_batch is None else f' (batch {bad_batch + 1})'}. "
        f"The learning rate ({lr:g}) is probably too high: try one 10x smaller. {kept}",
        epoch + 1,
    )


class _EarlyStopping:
    """Track the best validation loss; say when ``patience`` epochs brought nothing better.

    A resumed run starts from the best epoch of the history it resumes (whose
    weights it no longer has).
    """

    def __init__(self, patience: int | None, history: History) -> None:
        self.patience = patience
        self.best_loss, self.best_weights, self.best_epoch = math.inf, None, 0
        if patience and history.records:
            i = int(np.nanargmin(history["val_loss"]))
            self.best_loss, self.best_epoch = history.records[i]["val_loss"], i + 1

    def update(self, model: keras.Model, val_loss: float, epoch: int) -> bool:
        """Record epoch ``epoch`` (1-based); return whether to stop now."""
        if not self.patience:
            return False
        if val_loss < self.best_loss:
            self.best_loss, self.best_weights, self.best_epoch = val_loss, model.get_weights(), epoch
            return False
        return epoch - self.best_epoch >= self.patience

    def restore_best(self, model: keras.Model) -> None:
        """Put the best epoch's weights back, if this run has them."""
        if self.best_weights is not None:
            model.set_weights(self.best_weights)


def _restore_last_good(model: keras.Model, checkpoint: Checkpoint | None, history: History) -> None:
    if checkpoint is None or not history.records:
        return
    for where in (checkpoint, checkpoint.source()):
        state = where.read()
        if state is not None:
            _restore(where, model, state)
            return
