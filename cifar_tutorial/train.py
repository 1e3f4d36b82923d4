"""Training: one call of Keras' ``fit`` with Keras' callbacks, or the loop of chapter 8.

Chapter 7 ("The seed's CNN") trains with :func:`train` and ``loop="fit"``: that is
one ``model.fit(..., epochs=..., initial_epoch=..., callbacks=[...])`` call with
Keras' own callbacks, ``EarlyStopping(restore_best_weights=True)``, ``CSVLogger``
and the progress bar of ``fit``'s ``verbose``, plus the reader's own callbacks
(``callbacks=[keras.callbacks.TensorBoard(...)]``). Chapter 8 ("A custom training
loop") opens ``loop="custom"``: the epochs written out around
:func:`cifar_tutorial.steps.make_train_step`, calling the same callbacks. Both

- draw a new order and new augmentation every epoch, epoch ``e`` being
  ``data.dataset(..., seed=seed, epoch=e)``: a function of the seed and the epoch
  alone, so that a resumed run sees exactly the batches an uninterrupted run sees;
- write a checkpoint after every finished epoch (weights, optimizer state and
  history; atomically) when given ``out_dir``, and resume from it when started
  again with the same settings (:mod:`cifar_tutorial.checkpoints`);
- stop with :class:`~cifar_tutorial.errors.TrainingDiverged` when the loss turns
  NaN, infinite or huge, putting the last good checkpoint back, and with
  :class:`~cifar_tutorial.errors.TrainingInterrupted` on Ctrl-C;
- accept a ``tf.distribute`` strategy (chapter 10).

They return a :class:`cifar_tutorial.records.History` (also reachable as
``train.History``).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_tutorial.checkpoints import (  # noqa: F401 - train.CHECKPOINT_DIR for the tests
    CHECKPOINT_DIR,
    Checkpoint,
    interrupted,
    open_checkpoint,
)
from cifar_tutorial.data import CifarData
from cifar_tutorial.distribute import is_chief, is_multi_worker, shard_by_data, workers_disagreement
from cifar_tutorial.errors import (  # noqa: F401 - also reachable as train.TrainingError etc.
    CheckpointError,
    TrainingDiverged,
    TrainingError,
    TrainingInterrupted,
    UsageError,
)
from cifar_tutorial.models import outputs_logits
from cifar_tutorial.records import History
from cifar_tutorial.steps import epoch_metrics, label_mode_of, make_eval_step, make_train_step

__all__ = [
    "DIVERGED_LOSS",
    "METRICS",
    "StopOnDivergence",
    "compile_model",
    "check_training_args",
    "train",
]

DIVERGED_LOSS = 1e4
"""A loss above this counts as diverged, like NaN. Cross-entropy starts near
``ln 10 = 2.3``, and a finite loss of 1e21 (Adam with a learning rate of 1000) means
the weights have blown up for good."""
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


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
    """Compile with cross-entropy matching the labels and the model's head (chapter 7).

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
        Label smoothing (one-hot labels only in Keras: with ``"sparse"`` it is
        refused).
    weight_decay : float, optional
        Decoupled weight decay for ``"adamw"`` and ``"sgd"``.

    Returns
    -------
    keras.Model
        The same model, compiled, with ``jit_compile=False`` (XLA is slower on CPU).

    Raises
    ------
    UsageError
        For an unknown optimizer or label mode, a learning rate that is not
        positive, or label smoothing with integer labels.
    """
    if label_mode not in ("sparse", "onehot"):
        raise UsageError(f"label_mode must be 'sparse' or 'onehot', got {label_mode!r}")
    if label_smoothing and label_mode != "onehot":
        raise UsageError("label smoothing needs label_mode='onehot'")
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:
        raise UsageError(f"learning_rate must be positive, got {learning_rate}")
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
        raise UsageError(f"unknown optimizer {optimizer!r}; choose adam, adamw or sgd")
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"], jit_compile=False)
    return model


def check_training_args(epochs: int, batch_size: int, num_train: int) -> None:
    """Refuse bad training arguments before any work starts.

    Raises
    ------
    UsageError
        If ``epochs`` or ``batch_size`` is not positive, or the batch is larger
        than the training set.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs <= 0:
        raise UsageError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size > num_train:
        raise UsageError(
            f"batch_size {batch_size} is larger than the training set ({num_train} images); "
            "use a smaller batch"
        )


# --------------------------------------------------------------------------- callbacks


class StopOnDivergence(keras.callbacks.Callback):
    """Keras' ``TerminateOnNaN``, raising :class:`TrainingDiverged` (chapters 7 and 8).

    Also a finite loss above ``limit`` counts: Adam with a far too high learning
    rate gives losses of 1e21 that never become NaN. Raising (rather than setting
    ``model.stop_training``) keeps the diverged epoch out of the checkpoint and
    out of every other callback's ``on_epoch_end``.
    """

    def __init__(self, limit: float = DIVERGED_LOSS) -> None:
        super().__init__()
        self.limit, self.epoch = limit, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Remember the epoch, for the message."""
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Check the running mean loss after every batch."""
        self._check(logs, f" (batch {batch + 1})")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Check the epoch's mean loss."""
        self._check(logs, "")

    def _check(self, logs: dict | None, where: str) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not float(loss) <= self.limit:  # NaN fails every comparison
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            raise TrainingDiverged(
                f"the loss diverged (NaN, infinite or above {self.limit:g}) in epoch "
                f"{self.epoch + 1}{where}. The learning rate ({lr:g}) is probably too high: "
                "try one 10x smaller.", self.epoch + 1)


class _EpochRecords(keras.callbacks.Callback):
    """Append each finished epoch to the :class:`History` and save the checkpoint.

    Keras' ``ModelCheckpoint`` writes in place; this writes atomically, with the
    optimizer's state and the history that a resumed run needs
    (:meth:`cifar_tutorial.checkpoints.Checkpoint.write_with`).
    """

    def __init__(self, history: History, checkpoint: Checkpoint | None, fingerprint: dict,
                 early_stopping: keras.callbacks.EarlyStopping | None) -> None:
        super().__init__()
        self.history, self.checkpoint, self.fingerprint = history, checkpoint, fingerprint
        self.early_stopping, self.started = early_stopping, time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        record = {"epoch": epoch + 1, **{k: float(logs.get(k, math.nan)) for k in METRICS},
                  "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                  "seconds": time.perf_counter() - self.started}
        history = History(self.history.records + [record], summary=self.history.summary,
                          stopped_early=bool(self.early_stopping and self.model.stop_training))
        if self.checkpoint is not None:  # first, so that Ctrl-C never counts an unsaved epoch
            self.checkpoint.write_with(self.model.save_weights, {
                "epochs_done": len(history), "fingerprint": self.fingerprint,
                "history": history.to_dict()})
        self.history.records, self.history.stopped_early = history.records, history.stopped_early


# --------------------------------------------------------------------------- train


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
    callbacks: Sequence[keras.callbacks.Callback] = (),
    label_mode: str | None = None,
    strategy=None,
    verbose: int = 1,
) -> History:
    """Train a compiled model on ``data`` for ``epochs`` epochs (chapters 7 and 8).

    Parameters
    ----------
    model : keras.Model
        A compiled model (:func:`compile_model`, or ``model.compile`` with a
        cross-entropy loss, e.g. ``loss="sparse_categorical_crossentropy"``),
        under ``strategy.scope()`` when a strategy is given.
    data : CifarData
        The data; validation metrics are computed when it has a validation split.
    epochs : int
        Total number of epochs (a resumed run trains only the missing ones).
    batch_size : int
        Global batch size, split across replicas by the strategy.
    loop : {"fit", "custom"}
        Keras ``fit`` or the ``tf.GradientTape`` loop of :func:`make_train_step`.
    out_dir : path, optional
        Folder for the per-epoch checkpoint (``out_dir/checkpoint``) and
        ``CSVLogger``'s ``out_dir/history.csv``.
    resume : bool
        Continue from the checkpoint in ``out_dir`` if there is one; ``False``
        starts afresh and replaces it.
    seed : int
        Seed of the order and augmentation of every epoch.
    augment : callable, optional
        Per-image augmentation, see :func:`cifar_tutorial.data.flip_and_translate`.
    early_stopping : int, optional
        Keras' ``EarlyStopping(patience=early_stopping, restore_best_weights=True)``
        on ``val_loss``. A resumed run counts its patience from where it resumed,
        against the best ``val_loss`` of its history.
    callbacks : sequence of keras.callbacks.Callback
        More callbacks, called after the package's (both loops).
    label_mode : {"sparse", "onehot"}, optional
        The labels to feed the loss; by default the compiled loss's
        (:func:`cifar_tutorial.steps.label_mode_of`).
    strategy : tf.distribute.Strategy, optional
        Distribution strategy (chapter 10).
    verbose : int
        0 silent, 1 one line per epoch, 2 a progress bar within epochs.

    Returns
    -------
    History
        The metrics of every finished epoch, including resumed ones.

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN, infinite or huge; the last checkpoint's weights
        are put back into ``model`` (and stay in the checkpoint).
    TrainingInterrupted
        On Ctrl-C; finished epochs stay in the checkpoint.
    CheckpointError
        When ``out_dir`` holds a checkpoint of another run, or one that cannot be
        read; the message names the file and the ways on.
    """
    if loop not in ("fit", "custom"):
        raise UsageError(f"loop must be 'fit' or 'custom', got {loop!r}")
    check_training_args(epochs, batch_size, len(data.y_train))
    label_mode = label_mode or label_mode_of(model)
    where = strategy or tf.distribute.get_strategy()
    if loop == "fit" and is_multi_worker(where):
        raise UsageError(
            f"Keras {keras.__version__} cannot fit under MultiWorkerMirroredStrategy (its "
            "first-batch build step reduces the (images, labels) pair, which that strategy "
            "refuses); train with loop='custom' (--loop custom)"
        )
    checkpoint = open_checkpoint(out_dir, strategy)
    fingerprint = {"model": model.name, "parameters": int(model.count_params()), "loop": loop,
                   "batch_size": batch_size, "seed": seed, "label_mode": label_mode}
    history = _resume(model, checkpoint, fingerprint, where, resume=resume, verbose=verbose)
    done = len(history)

    def dataset(split: str, **kwargs) -> tf.data.Dataset:
        ds = data.dataset(split, batch_size, label_mode=label_mode, **kwargs)
        return ds if strategy is None else shard_by_data(ds)

    # The one piece fit lacks: epoch e's batches are data.dataset(..., epoch=e) for
    # every e, one pass after the other, whichever epoch the run starts from.
    train_ds = dataset("train", seed=seed, augment=augment, epoch=range(done, epochs))
    val_ds = dataset("val") if len(data.y_val) > 0 else None
    stopper = None
    if early_stopping and val_ds is not None:
        best = min((r["val_loss"] for r in history.records), default=None)
        stopper = keras.callbacks.EarlyStopping(
            patience=early_stopping, restore_best_weights=True, verbose=int(verbose > 0),
            baseline=best if best is not None and math.isfinite(best) else None)
    ours: list[keras.callbacks.Callback] = [StopOnDivergence()]
    ours += [stopper] if stopper else []
    ours.append(_EpochRecords(history, checkpoint, fingerprint, stopper))
    if checkpoint is not None and is_chief(strategy):
        ours.append(keras.callbacks.CSVLogger(str(Path(out_dir) / "history.csv"), append=done > 0))
    run = _fit if loop == "fit" else _custom_loop
    try:
        if done < epochs:
            run(model, train_ds, val_ds, epochs=epochs, initial_epoch=done,
                steps=-(-len(data.y_train) // batch_size), callbacks=[*ours, *callbacks],
                strategy=strategy, verbose=verbose)
    except KeyboardInterrupt:
        raise interrupted(len(history), len(history), checkpoint) from None
    except TrainingDiverged as err:
        if not history.records:
            kept = "No epoch had finished, so no weights were kept."
        elif checkpoint is None:
            kept = "Without an output folder no checkpoint was kept to go back to."
        else:
            _restore_last_good(model, checkpoint)
            kept = (f"The last good weights (epoch {len(history)}) are kept in "
                    f"{checkpoint.folder} and put back into the model.")
        raise TrainingDiverged(f"{err} {kept}", err.epoch) from None
    if stopper is not None and stopper.stopped_epoch:
        history.stopped_early = True
    if checkpoint is not None and not is_chief(strategy):
        shutil.rmtree(checkpoint.folder, ignore_errors=True)
    return history


def _fit(model: keras.Model, train_ds, val_ds, *, epochs: int, initial_epoch: int, steps: int,
         callbacks: list, strategy, verbose: int) -> None:
    """Chapter 7's loop: Keras' own."""
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
              steps_per_epoch=steps, callbacks=callbacks, verbose={0: 0, 1: 2}.get(verbose, 1),
              shuffle=False)  # the dataset is shuffled already


def _custom_loop(model: keras.Model, train_ds, val_ds, *, epochs: int, initial_epoch: int,
                 steps: int, callbacks: list, strategy, verbose: int) -> None:
    """Chapter 8's loop: the epochs of ``fit`` written out, calling the same callbacks."""
    where = strategy or tf.distribute.get_strategy()
    with where.scope():
        metrics, val_metrics = epoch_metrics(), epoch_metrics("val_")
    train_step = make_train_step(model, metrics, strategy)
    eval_step = make_eval_step(model, val_metrics, strategy)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_progbar=verbose > 0, verbose={1: 2}.get(verbose, 1), epochs=epochs,
        steps=steps, model=model)
    batches = iter(where.experimental_distribute_dataset(train_ds))
    model.stop_training = False
    logs: dict = {}
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for metric in metrics + val_metrics:
            metric.reset_state()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            train_step(next(batches))
            callback_list.on_train_batch_end(step)
        logs = {m.name: float(m.result()) for m in metrics}
        if val_ds is not None:
            for batch in where.experimental_distribute_dataset(val_ds):
                eval_step(batch)
            logs.update({m.name: float(m.result()) for m in val_metrics})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)


# --------------------------------------------------------------------------- checkpoints


def _load(model: keras.Model, path: Path) -> None:
    """Load an epoch's weights and optimizer state into ``model``, keeping its learning rate."""
    # The weights file holds the optimizer's state, learning rate included; keep
    # the learning rate the caller compiled with (e.g. a smaller one to go on).
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    lr = None
    if isinstance(optimizer.learning_rate, keras.Variable):
        lr = keras.ops.convert_to_numpy(optimizer.learning_rate)
    model.load_weights(path)
    if lr is not None:
        optimizer.learning_rate.assign(lr)


def _resume(model: keras.Model, checkpoint: Checkpoint | None, fingerprint: dict, strategy, *,
            resume: bool, verbose: int) -> History:
    """Load the newest readable epoch of the same run into ``model``; return its history."""
    state = None
    if checkpoint is not None and resume:
        source = checkpoint.source()
        if is_multi_worker(strategy):  # the workers must all resume, or all start afresh
            state = source.read_run(fingerprint)
            problem = workers_disagreement(strategy, state["epochs_done"] if state else 0)
            if problem:
                raise TrainingError(problem)
        with strategy.scope():  # builds the optimizer's variables
            state = source.load_newest(fingerprint, lambda path: _load(model, path))
    if state is None:
        old = [path.name for _, path in checkpoint.epoch_files()] if checkpoint else []
        if old:  # said even when silent: they will be deleted
            print(f"Starting afresh: the first epoch's checkpoint replaces {', '.join(old)} "
                  f"in {checkpoint.folder}")
        return History()
    history = History.from_dict(state["history"])
    if verbose:
        print(f"Resuming after epoch {len(history)} from {checkpoint.source().folder.name}/")
    return history


def _restore_last_good(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Put the checkpoint's last epoch back into ``model`` after a diverged epoch."""
    for where in (checkpoint, checkpoint.source()):
        state = where.read()
        if state is not None:
            _load(model, where.file(state))
            return
