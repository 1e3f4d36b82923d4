"""Training: Keras ``fit`` and a ``tf.GradientTape`` loop behind one interface.

Chapter 6 ("The seed's CNN") trains with :func:`train` and ``loop="fit"``;
chapter 7 ("A custom training loop") opens the ``loop="custom"`` path, whose step is
:func:`make_train_step`. Both

- run one epoch at a time on a data order drawn from ``seed + epoch``, so that a
  resumed run sees exactly the batches an uninterrupted run would have seen;
- write a checkpoint after every finished epoch (weights, optimizer state and
  history; atomically) when given ``out_dir``, and resume from it when started
  again with the same settings;
- stop with :class:`TrainingDiverged` when the loss turns NaN, infinite or huge, keeping
  the last good checkpoint, and with :class:`TrainingInterrupted` on Ctrl-C;
- accept a ``tf.distribute`` strategy (chapter 9).
"""

from __future__ import annotations

import atexit
import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_tutorial.data import CifarData
from cifar_tutorial.models import outputs_logits

CHECKPOINT_DIR = "checkpoint"
DIVERGED_LOSS = 1e4
"""A mean loss above this counts as diverged, like NaN: cross-entropy starts near
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


# --------------------------------------------------------------------------- history


@dataclasses.dataclass
class History:
    """Per-epoch metrics of one training run, the same for ``fit`` and custom loops.

    Attributes
    ----------
    records : list of dict
        One dict per finished epoch with ``epoch`` (1-based), ``loss``,
        ``accuracy``, ``val_loss``, ``val_accuracy`` (NaN without validation data),
        ``lr`` and ``seconds``.
    """

    records: list[dict[str, float]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False

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
        return {"records": self.records, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(records=[dict(r) for r in d["records"]], stopped_early=d.get("stopped_early", False))

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


def label_mode_of(model: keras.Model) -> str:
    """Return ``"sparse"`` or ``"onehot"``: the labels the compiled loss expects."""
    if model.loss is None:
        raise ValueError("the model is not compiled: call compile_model first")
    return "sparse" if "Sparse" in type(model.loss).__name__ else "onehot"


# --------------------------------------------------------------------------- custom loop


def make_train_step(model: keras.Model, strategy=None) -> Callable:
    """Build one training step written out with ``tf.GradientTape`` (chapter 7).

    The step computes per-example losses, averages them over the *global* batch
    with ``tf.nn.compute_average_loss`` (so that summing gradients over replicas
    gives the mean, as the ``tf.distribute`` guides prescribe), differentiates,
    and lets the optimizer apply the gradients. The global batch is counted across
    the replicas before each step, so that the last, smaller batch is averaged
    right even when the replicas get unequal shares of it (left alone,
    ``compute_average_loss`` would divide by the local size times the number of
    replicas).

    Parameters
    ----------
    model : keras.Model
        A compiled model (its loss and optimizer are used).
    strategy : tf.distribute.Strategy, optional
        Where to run; the default strategy when omitted.

    Returns
    -------
    callable
        ``step(batch) -> (loss_sum, correct, count)``, a ``tf.function`` taking a
        batch (distributed when a strategy is given) and returning global sums.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = model.loss
    optimizer = model.optimizer
    sparse = label_mode_of(model) == "sparse"
    if not optimizer.built:
        # Built here, under the strategy, not lazily inside the first replicated step:
        # MirroredStrategy fails on optimizer variables created there.
        with strategy.scope():
            optimizer.build(model.trainable_variables)

    def replica_step(x, y, global_count):
        count = tf.cast(tf.shape(x)[0], tf.float32)
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = loss_fn.call(y, pred)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=tf.cast(global_count, tf.int32)
            )
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return _batch_sums(y, pred, per_example, count, sparse)

    return _summed_over_replicas(replica_step, strategy, pass_global_count=True)


def make_eval_step(model: keras.Model, strategy=None) -> Callable:
    """Build the custom loop's validation step, the counterpart of :func:`make_train_step`.

    The custom loop validates with it under ``MultiWorkerMirroredStrategy``, where
    Keras' ``evaluate`` fails (chapter 9).

    Returns
    -------
    callable
        ``step(batch) -> (loss_sum, correct, count)`` summed over all replicas.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = model.loss
    sparse = label_mode_of(model) == "sparse"

    def replica_step(x, y):
        pred = model(x, training=False)
        count = tf.cast(tf.shape(x)[0], tf.float32)
        return _batch_sums(y, pred, loss_fn.call(y, pred), count, sparse)

    return _summed_over_replicas(replica_step, strategy)


def _batch_sums(y, pred, per_example, count, sparse: bool) -> tuple:
    import tensorflow as tf

    truth = y if sparse else tf.argmax(y, axis=-1)
    hits = tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), tf.cast(truth, tf.int32))
    return tf.reduce_sum(per_example), tf.reduce_sum(tf.cast(hits, tf.float32)), count


def _summed_over_replicas(
    replica_step: Callable, strategy, pass_global_count: bool = False
) -> Callable:
    import tensorflow as tf

    total = tf.distribute.ReduceOp.SUM

    @tf.function
    def step(batch):
        args = tuple(batch)
        if pass_global_count:  # summed in cross-replica context, then given to every replica
            counts = strategy.run(lambda x, *_: tf.cast(tf.shape(x)[0], tf.float32), args=args)
            args += (strategy.reduce(total, counts, axis=None),)
        sums = strategy.run(replica_step, args=args)
        return tuple(strategy.reduce(total, s, axis=None) for s in sums)

    return step


def _custom_evaluate(step: Callable, dataset, strategy) -> dict:
    totals = np.zeros(3)
    for batch in strategy.experimental_distribute_dataset(dataset):
        totals += [float(v) for v in step(batch)]
    return {"val_loss": totals[0] / totals[2], "val_accuracy": totals[1] / totals[2]}


def _custom_epoch(step: Callable, dataset, strategy, max_steps: int | None, guard: _NaNGuard) -> dict:
    import tensorflow as tf

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


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    spec = resolver.cluster_spec().as_dict()
    if not spec:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if "chief" in spec:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def is_chief(strategy=None) -> bool:
    """Tell whether this process writes outputs: always, except on non-chief workers.

    With ``MultiWorkerMirroredStrategy`` every worker trains, but only the chief
    (the ``chief`` task, or worker 0 where there is none) writes files (chapter 9).
    """
    return strategy is None or _is_chief(strategy)


@dataclasses.dataclass
class _Checkpoint:
    """Checkpoint folder: ``epoch-NNNN.weights.h5`` plus ``state.json`` naming it.

    A non-chief worker writes into a scratch ``folder`` of its own and resumes from
    the chief's folder, ``resume_from`` (chapter 9).
    """

    folder: Path
    resume_from: Path | None = None

    def source(self) -> _Checkpoint:
        """The checkpoint to resume from."""
        return _Checkpoint(self.resume_from) if self.resume_from else self

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def read(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise TrainingError(
                f"checkpoint {self.state_path} is unreadable ({err}); delete the folder "
                f"{self.folder} to start afresh"
            ) from None

    def write(self, model: keras.Model, state: dict) -> None:
        name = f"epoch-{state['epochs_done']:04d}.weights.h5"
        atomic_save(model.save_weights, self.folder / name)
        atomic_write_text(self.state_path, json.dumps({**state, "weights": name}, indent=2))
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def restore(self, model: keras.Model, state: dict) -> None:
        # The weights file holds the optimizer's state, learning rate included; keep
        # the learning rate the caller compiled with (e.g. a smaller one to go on).
        optimizer = model.optimizer
        lr = None
        if optimizer is not None:
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            if isinstance(optimizer.learning_rate, keras.Variable):
                lr = keras.ops.convert_to_numpy(optimizer.learning_rate)
        model.load_weights(self.folder / state["weights"])
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


def _format_epoch(record: dict, epochs: int) -> str:
    parts = [f"Epoch {int(record['epoch'])}/{epochs}", f"{record['seconds']:.1f}s"]
    for key in METRICS:
        value = record.get(key)
        if value is not None and not math.isnan(value):
            parts.append(f"{key} {value:.4f}")
    return " - ".join(parts)


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
    import tensorflow as tf

    if loop not in ("fit", "custom"):
        raise ValueError(f"loop must be 'fit' or 'custom', got {loop!r}")
    check_training_args(epochs, batch_size, len(data.y_train))
    label_mode = label_mode_of(model)
    has_val = len(data.y_val) > 0
    strategy_ = strategy or tf.distribute.get_strategy()
    if loop == "fit" and _multi_worker(strategy_):
        raise ValueError(
            f"Keras {keras.__version__} cannot fit under MultiWorkerMirroredStrategy (its "
            "first-batch build step reduces the (images, labels) pair, which that strategy "
            "refuses); train with loop='custom' (--loop custom)"
        )

    history = History()
    checkpoint: _Checkpoint | None = None
    if out_dir is not None:
        folder = check_output_folder(out_dir) / CHECKPOINT_DIR
        checkpoint = _Checkpoint(folder)
        if not is_chief(strategy):
            scratch = Path(tempfile.mkdtemp(prefix="cifar-tutorial-worker-"))
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
            checkpoint = _Checkpoint(scratch, resume_from=folder)
    fingerprint = _fingerprint(model, loop, batch_size, seed, label_mode)

    state = None
    if checkpoint is not None and resume:
        source = checkpoint.source()
        state = source.read()
        if state is not None and state.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"{source.folder} holds a checkpoint of a different run "
                f"({state.get('fingerprint')}); use another output folder, or "
                "start afresh with resume=False (--no-resume)"
            )
    if _multi_worker(strategy_):  # before restoring, which the workers must all do or skip
        _check_workers_agree(strategy_, state["epochs_done"] if state else 0)
    if state is not None:
        with strategy_.scope():  # builds the optimizer's variables
            source.restore(model, state)
        history = History.from_dict(state["history"])
        if verbose:
            print(f"Resuming after epoch {len(history)} from {source.folder.name}/")

    step = make_train_step(model, strategy) if loop == "custom" else None
    eval_step = make_eval_step(model, strategy_) if _multi_worker(strategy_) else None
    best = (math.inf, None, 0)  # (val_loss, weights, epoch)
    if early_stopping and history.records and has_val:
        i = int(np.nanargmin(history["val_loss"]))
        best = (history.records[i]["val_loss"], None, i + 1)
    val_ds = data.dataset("val", batch_size, label_mode=label_mode) if has_val else None
    if val_ds is not None and strategy is not None:
        val_ds = _shard_by_data(val_ds)

    for epoch in range(len(history), epochs):
        train_ds = data.dataset(
            "train", batch_size, label_mode=label_mode, seed=seed + epoch, augment=augment
        )
        if strategy is not None:
            train_ds = _shard_by_data(train_ds)
        guard = _NaNGuard()
        start = time.perf_counter()
        try:
            if loop == "fit":
                callbacks: list[keras.callbacks.Callback] = [guard]
                if verbose >= 2:
                    steps = math.ceil(len(data.y_train) / batch_size)
                    callbacks.append(_BatchProgress(min(steps, max_steps_per_epoch or steps)))
                if max_steps_per_epoch is not None:
                    train_ds = train_ds.take(max_steps_per_epoch)
                logs = model.fit(
                    train_ds, epochs=1, verbose=0, shuffle=False, callbacks=callbacks
                ).history
                record = {k: float(v[-1]) for k, v in logs.items() if k in ("loss", "accuracy")}
            else:
                record = _custom_epoch(step, train_ds, strategy_, max_steps_per_epoch, guard)
            if guard.bad_batch is None and not _diverged(record["loss"]) and val_ds is not None:
                if eval_step is not None:
                    record.update(_custom_evaluate(eval_step, val_ds, strategy_))
                else:
                    scores = model.evaluate(val_ds, verbose=0, return_dict=True)
                    record["val_loss"] = float(scores["loss"])
                    record["val_accuracy"] = float(scores["accuracy"])
        except KeyboardInterrupt:
            done = len(history)
            where = f" in {checkpoint.folder}" if checkpoint else ""
            hint = (
                "Run the same command again to resume."
                if checkpoint
                else "Pass an output folder to be able to resume."
            )
            raise TrainingInterrupted(
                f"training interrupted during epoch {epoch + 1}; {done} finished "
                f"epoch(s) kept{where}. {hint}",
                done,
            ) from None

        if guard.bad_batch is not None or _diverged(record["loss"]):
            _restore_last_good(model, checkpoint, history)
            lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            kept = (
                f"The last good weights (epoch {len(history)}) are kept in {checkpoint.folder}."
                if checkpoint and len(history)
                else "No epoch had finished, so no weights were kept."
            )
            raise TrainingDiverged(
                f"the loss diverged (NaN, infinite or above {DIVERGED_LOSS:g}) in epoch {epoch + 1}"
                f"{'' if guard.bad_batch is None else f' (batch {guard.bad_batch + 1})'}. "
                f"The learning rate ({lr:g}) is probably too high: try one 10x smaller. {kept}",
                epoch + 1,
            )

        record.setdefault("val_loss", float("nan"))
        record.setdefault("val_accuracy", float("nan"))
        record["lr"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        record["seconds"] = time.perf_counter() - start
        history.records.append({"epoch": epoch + 1, **record})
        if verbose:
            print(_format_epoch(history.records[-1], epochs), flush=True)

        stop = False
        if early_stopping and has_val:
            if record["val_loss"] < best[0]:
                best = (record["val_loss"], model.get_weights(), epoch + 1)
            elif epoch + 1 - best[2] >= early_stopping:
                stop = True
                history.stopped_early = True
        if checkpoint is not None:
            checkpoint.write(
                model,
                {"epochs_done": len(history), "fingerprint": fingerprint, "history": history.to_dict()},
            )
        if stop:
            if best[1] is not None:
                model.set_weights(best[1])
            if verbose:
                print(f"Early stop: no better val_loss for {early_stopping} epochs; "
                      f"weights of epoch {best[2]} restored")
            break

    if checkpoint is not None and not is_chief(strategy):
        shutil.rmtree(checkpoint.folder, ignore_errors=True)
    return history


def _restore_last_good(model: keras.Model, checkpoint: _Checkpoint | None, history: History) -> None:
    if checkpoint is None or not history.records:
        return
    for where in (checkpoint, checkpoint.source()):
        state = where.read()
        if state is not None:
            where.restore(model, state)
            return


def _multi_worker(strategy) -> bool:
    """Whether ``strategy`` has replicas in other processes (chapter 9)."""
    replicas = strategy.num_replicas_in_sync
    return replicas > 1 and replicas > len(strategy.extended.worker_devices)


def _shard_by_data(dataset):
    """Let each worker of a cluster take its share of every batch (chapter 9).

    The pipelines read arrays, not files, so the automatic choice (shard by file)
    cannot apply; say so instead of letting TensorFlow warn and fall back.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _check_workers_agree(strategy, epochs_done: int) -> None:
    """Refuse to go on when the workers would resume from different epochs.

    They would otherwise wait for each other forever. Every worker contributes
    ``n`` and ``n**2``; the means agree with the local ``n`` only when all ``n`` are
    equal (their variance is then zero).
    """
    import tensorflow as tf

    local = tf.constant([float(epochs_done), float(epochs_done) ** 2])

    @tf.function
    def mean_over_workers():
        values = strategy.run(lambda: tf.identity(local))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None)

    mean = mean_over_workers().numpy()
    if abs(mean[1] - mean[0] ** 2) > 1e-3 or abs(mean[0] - epochs_done) > 1e-3:
        here = f"after epoch {epochs_done}" if epochs_done else "from the start"
        raise TrainingError(
            f"the workers would resume from different epochs (this one {here}): give all "
            "workers the same output folder on a shared file system, so that they resume "
            "from the chief's checkpoint, or start afresh with --no-resume"
        )


def iterate_batches(dataset, limit: int | None = None) -> Iterator:
    """Yield at most ``limit`` batches of ``dataset`` (all when ``None``)."""
    for i, batch in enumerate(dataset):
        if limit is not None and i >= limit:
            return
        yield batch
