"""Small, timed training experiments and their tables (chapter 9, "Going further").

Chapter 9 measures what each ingredient of a stronger training run buys. Every
experiment is one call of :func:`run_experiment` (seed, build, compile, train, time);
:func:`runs_table` and :func:`text_table` turn the results into fixed-width tables,
:func:`grid_search` tries every combination of a few hyperparameters and ranks them
by validation accuracy, and :func:`read_bench_results` reads the JSON files that
``bench/fast_recipe.py`` writes.

Chapter 10 ("Scaling out") times and compares runs too: :func:`compare_with_one_device`
trains one model on one device and on several replicas and compares the weights,
and :func:`throughput` measures images per second under a strategy.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cifar_tutorial import distribute, runtime, train
from cifar_tutorial.data import CifarData
from cifar_tutorial.models import build_model
from cifar_tutorial.records import History

__all__ = [
    "Experiment",
    "run_experiment",
    "text_table",
    "run_summary",
    "RUN_COLUMNS",
    "RUN_HEADERS",
    "runs_table",
    "grid_search",
    "read_bench_results",
    "Comparison",
    "compare_with_one_device",
    "throughput",
]


@dataclasses.dataclass
class Experiment:
    """One training run of chapter 9: the trained model, its history and its wall time.

    Attributes
    ----------
    model : keras.Model
        The trained model.
    history : History
        Per-epoch metrics, see :class:`cifar_tutorial.records.History`.
    seconds : float
        Wall time of the training call, validation after each epoch included.
    """

    model: keras.Model
    history: History
    seconds: float


def run_experiment(
    build: Callable[[], keras.Model],
    data: CifarData,
    *,
    epochs: int,
    batch_size: int = 64,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    optimizer: str = "adam",
    augment: Callable | None = None,
    early_stopping: int | None = None,
    seed: int = 0,
    verbose: int = 1,
    **compile_options: Any,
) -> Experiment:
    """Seed, build, compile and train one model, and time the training (chapter 9).

    Every run starts from :func:`cifar_tutorial.runtime.set_seed` with the same
    ``seed``, so two experiments that differ in one setting start from the same
    weights (when their networks have the same shapes) and see the same batches.

    Parameters
    ----------
    build : callable
        Returns a fresh, uncompiled model, e.g. ``lambda: models.seed_cnn()``.
    data : CifarData
        Training and validation data.
    epochs, batch_size : int
        Passed to :func:`cifar_tutorial.train.train`.
    learning_rate : float or schedule
        A constant or a ``keras.optimizers.schedules`` schedule (make a new one
        per run: the optimizer counts its steps from zero).
    optimizer : {"adam", "adamw", "sgd"}
        See :func:`cifar_tutorial.train.compile_model`.
    augment : callable, optional
        Per-image augmentation, e.g. :func:`cifar_tutorial.data.flip_and_translate`.
    early_stopping : int, optional
        Stop when the validation loss has not improved for this many epochs and go
        back to the best weights.
    seed : int
        Seed of the weights, the data order and the augmentation.
    verbose : int
        0 silent, 1 one line per epoch.
    **compile_options
        More keywords for :func:`cifar_tutorial.train.compile_model`
        (``label_mode``, ``label_smoothing``, ``weight_decay``).

    Returns
    -------
    Experiment
        The model, its history and the training wall time.
    """
    runtime.set_seed(seed)
    model = train.compile_model(
        build(), learning_rate=learning_rate, optimizer=optimizer, **compile_options
    )
    start = time.perf_counter()
    history = train.train(
        model, data, epochs=epochs, batch_size=batch_size, seed=seed, augment=augment,
        early_stopping=early_stopping, verbose=verbose,
    )
    return Experiment(model, history, time.perf_counter() - start)


def text_table(
    rows: Sequence[Mapping[str, Any]],
    formats: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
) -> str:
    """Format rows as a fixed-width text table (chapter 9).

    Parameters
    ----------
    rows : sequence of mapping
        One mapping per row; missing keys and ``None`` show as ``-``.
    formats : mapping of str to str
        Column name to format spec (``".4f"``, ``"d"``, ``""``), in column order.
        The first column is left-aligned, the others right-aligned.
    headers : mapping of str to str, optional
        Column name to the header shown instead of the name. A header with a
        newline takes two lines (or more), so that its column need be no wider
        than its values; shorter headers sit on the last header line.

    Returns
    -------
    str
        The header lines, a rule and one line per row.
    """
    def cell(value: Any, spec: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(value, spec)

    names = list(formats)
    heads = [(headers or {}).get(n, n).split("\n") for n in names]
    depth = max(len(h) for h in heads)
    heads = [[""] * (depth - len(h)) + h for h in heads]
    body = [[cell(row.get(n), formats[n]) for n in names] for row in rows]
    widths = [max([*map(len, heads[i]), *(len(r[i]) for r in body)]) for i in range(len(names))]

    def line(values: Sequence[str]) -> str:
        first = f"{values[0]:<{widths[0]}}"
        rest = [f"{v:>{w}}" for v, w in zip(values[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    header = [line([h[k] for h in heads]) for k in range(depth)]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([*header, rule, *(line(r) for r in body)])


def run_summary(history: History, seconds: float | None = None) -> dict[str, Any]:
    """Summarize one run: last and best validation figures, overfitting gap, time.

    Parameters
    ----------
    history : History
        The run's history (with validation metrics).
    seconds : float, optional
        Wall time; defaults to the sum of the epochs' times.

    Returns
    -------
    dict
        ``epochs``, ``train_acc`` and ``val_acc`` (last epoch), ``best_val_acc``
        and its ``best_epoch``, ``min_val_loss`` and its ``min_loss_epoch``,
        ``last_val_loss``, ``gap`` (last training minus validation accuracy)
        and ``seconds``.
    """
    val_acc, val_loss = history["val_accuracy"], history["val_loss"]
    best = max(range(len(val_acc)), key=lambda i: val_acc[i])
    lowest = min(range(len(val_loss)), key=lambda i: val_loss[i])
    return {
        "epochs": len(history),
        "train_acc": history.last("accuracy"),
        "val_acc": history.last("val_accuracy"),
        "best_val_acc": val_acc[best],
        "best_epoch": best + 1,
        "min_val_loss": val_loss[lowest],
        "min_loss_epoch": lowest + 1,
        "last_val_loss": history.last("val_loss"),
        "gap": history.last("accuracy") - history.last("val_accuracy"),
        "seconds": sum(history["seconds"]) if seconds is None else seconds,
    }


RUN_COLUMNS: dict[str, str] = {
    "run": "",
    "train_acc": ".3f",
    "val_acc": ".3f",
    "gap": "+.3f",
    "best_val_acc": "",
    "min_val_loss": "",
    "seconds": ".0f",
}
"""The columns of :func:`runs_table` and their formats."""

RUN_HEADERS: dict[str, str] = {
    "train_acc": "train\nacc",
    "val_acc": "val\nacc",
    "best_val_acc": "best val\nacc (epoch)",
    "min_val_loss": "min val\nloss (epoch)",
    "seconds": "time\n(s)",
}
"""The headers of :func:`runs_table`, on two lines so that a row fits 80 characters."""


def runs_table(runs: Mapping[str, Experiment | History]) -> str:
    """Compare runs in one table, one line each (chapter 9).

    Parameters
    ----------
    runs : mapping of str to Experiment or History
        Run name to result.

    Returns
    -------
    str
        Columns: the last epoch's training and validation accuracy and their gap,
        the best validation accuracy and its epoch, the lowest validation loss and
        its epoch, and the wall time. With run names of up to 25 characters a line
        is at most 80 characters wide.
    """
    rows = []
    for name, run in runs.items():
        s = run_summary(run.history, run.seconds) if isinstance(run, Experiment) else run_summary(run)
        rows.append({
            "run": name, "train_acc": s["train_acc"], "val_acc": s["val_acc"], "gap": s["gap"],
            "best_val_acc": f"{s['best_val_acc']:.3f} ({s['best_epoch']})",
            "min_val_loss": f"{s['min_val_loss']:.3f} ({s['min_loss_epoch']})",
            "seconds": s["seconds"],
        })
    return text_table(rows, RUN_COLUMNS, RUN_HEADERS)


def grid_search(
    build: Callable[[], keras.Model],
    data: CifarData,
    grid: Mapping[str, Sequence[Any]],
    *,
    epochs: int,
    seed: int = 0,
    **fixed: Any,
) -> list[dict[str, Any]]:
    """Train one model per combination of settings; rank them on validation (chapter 9).

    Parameters
    ----------
    build : callable
        Returns a fresh, uncompiled model.
    data : CifarData
        Training data and the validation split that scores the settings. The test
        split is not used.
    grid : mapping of str to sequence
        Keyword of :func:`run_experiment` (``learning_rate``, ``batch_size``,
        ``optimizer``, ...) to the values to try.
    epochs : int
        Epochs per combination.
    seed : int
        The same seed for every combination.
    **fixed
        Further keywords for :func:`run_experiment`, the same for all.

    Returns
    -------
    list of dict
        One dict per combination with its settings, ``val_acc``, ``val_loss``,
        ``train_acc`` and ``seconds``, best validation accuracy first. A run whose
        loss diverged gets ``val_acc`` NaN and ``diverged`` True, and comes last.
    """
    names = list(grid)
    results = []
    for values in itertools.product(*(grid[n] for n in names)):
        config = dict(zip(names, values))
        start = time.perf_counter()
        row: dict[str, Any] = {**config, "diverged": False}
        try:
            run = run_experiment(build, data, epochs=epochs, seed=seed, verbose=0, **fixed, **config)
            h = run.history
            row.update(val_acc=h.last("val_accuracy"), val_loss=h.last("val_loss"),
                       train_acc=h.last("accuracy"))
        except train.TrainingDiverged:
            row.update(val_acc=math.nan, val_loss=math.nan, train_acc=math.nan, diverged=True)
        row["seconds"] = time.perf_counter() - start
        results.append(row)
    return sorted(results, key=lambda r: -r["val_acc"] if not math.isnan(r["val_acc"]) else math.inf)


def read_bench_results(
    paths: Sequence[str | os.PathLike],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read the JSON results of ``bench/fast_recipe.py`` (chapter 9).

    Each file holds the run's :class:`~cifar_tutorial.records.History` under
    ``"history"``, its held-out figures named for the test set
    (``test_accuracy`` in every record and in the summary, one value per TTA
    level), and where the run came from (``commit``, ``machine``, ``data``).

    Parameters
    ----------
    paths : sequence of path
        Result files, e.g. ``bench/results/fast_recipe_seed0.json``.

    Returns
    -------
    rows : list of dict
        One per file found: ``file`` (its name only), ``seed``, ``epochs``,
        ``precision``, ``batch_size``, ``params``, ``train_min`` (training wall
        time in minutes, evaluation excluded), ``images_per_s``, ``test_acc``
        (no test-time augmentation), ``test_acc_tta`` (flip),
        ``test_acc_tta2`` (flip and shifts), ``epoch_to_90``, ``cpu_count``,
        ``cores`` (CPU seconds per wall second of training, averaged over the
        epochs: about the number of cores the run had to itself),
        ``tensorflow``, ``commit``, ``data`` (the data folder's name),
        ``data_original`` (True for the original images, False for a lossy copy,
        None where the file does not say), and the
        per-epoch curve ``curve_epoch`` (the epoch's number), ``curve_min``
        (minutes of training so far) and ``curve_acc`` (test accuracy then, no
        augmentation); a key the file lacks is ``None`` (an empty list for the
        curve).
    missing : list of str
        Names of the files that do not exist.
    """
    rows, missing = [], []
    for path in map(Path, paths):
        if not path.is_file():
            missing.append(path.name)
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        history = result.get("history", {})
        summary, records = history.get("summary", {}), history.get("records", [])
        accuracy = summary.get("test_accuracy", {})
        train_time = summary.get("train_seconds")
        cores = [r["cpu_per_wall"] for r in records if r.get("cpu_per_wall") is not None]
        curve = [(r.get("epoch"), r["elapsed_seconds"], r["test_accuracy"]) for r in records
                 if r.get("test_accuracy") is not None]
        rows.append({
            "file": path.name,
            "seed": result.get("args", {}).get("seed"),
            **{key: summary.get(key) for key in ("epochs", "precision", "batch_size", "params")},
            "train_min": None if train_time is None else train_time / 60,
            "images_per_s": summary.get("images_per_s"),
            "test_acc": accuracy.get("none"),
            "test_acc_tta": accuracy.get("flip"),
            "test_acc_tta2": accuracy.get("flip_shift"),
            "epoch_to_90": summary.get("epoch_to_90"),
            "cpu_count": (result.get("machine") or {}).get("cpu_count"),
            "cores": sum(cores) / len(cores) if cores else None,
            "tensorflow": (result.get("versions") or {}).get("tensorflow"),
            "commit": result.get("commit"),
            "data": (result.get("data") or {}).get("name"),
            "data_original": (result.get("data") or {}).get("original"),
            "curve_epoch": [e for e, t, a in curve],
            "curve_min": [t / 60 for e, t, a in curve],
            "curve_acc": [a for e, t, a in curve],
        })
    return rows, missing


# --------------------------------------------------------------------------- replicas


@dataclasses.dataclass
class Comparison:
    """One model trained on one device and on several replicas, from the same start.

    Attributes
    ----------
    loop : str
        ``"fit"`` or ``"custom"``.
    replicas : int
        Replicas of the distributed run.
    steps : int
        Optimizer steps taken by each run.
    max_difference : float
        Largest absolute difference between the two runs' final weights.
    max_update : float
        Largest absolute change of a weight during the one-device run.
    loss_one, loss_replicas : float
        Mean training loss of the last epoch in each run.
    """

    loop: str
    replicas: int
    steps: int
    max_difference: float
    max_update: float
    loss_one: float
    loss_replicas: float

    @property
    def relative_difference(self) -> float:
        """The disagreement per unit of training progress, ``max_difference / max_update``."""
        return self.max_difference / self.max_update if self.max_update > 0 else float("inf")


def compare_with_one_device(
    data: CifarData,
    *,
    loop: str = "fit",
    devices: Sequence[str] | None = None,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    optimizer: str = "sgd",
    model: str = "seed",
    seed: int = 0,
) -> Comparison:
    """Train the same model on one device and with ``MirroredStrategy``; compare (chapter 10).

    Both runs start from the same weights and see the same batches in the same
    order. With the loss averaged over the global batch, summing the replicas'
    gradients gives the one-device gradient, so the weights agree up to
    floating-point rounding (the sums are taken in another order).

    Parameters
    ----------
    data : CifarData
        Training data (keep it small: this trains twice).
    loop : {"fit", "custom"}
        Which training loop of :func:`cifar_tutorial.train.train`.
    devices : sequence of str, optional
        Devices of the mirrored run (default: all local ones).
    epochs, batch_size : int
        Length of each run and the global batch size.
    learning_rate : float
        Learning rate.
    optimizer : str
        ``"sgd"`` by default: its step is proportional to the gradient, so a wrongly
        scaled gradient shows in the weights. Adam divides the scale out.
    model : str
        A name for :func:`cifar_tutorial.models.build_model` (without dropout, so
        that the replicas draw no random numbers).
    seed : int
        Seed of the initial weights and of the data order. Op determinism is left
        as the process has it (:func:`cifar_tutorial.runtime.set_seed`): both runs
        use deterministic kernels when the chapter's setup cell turned them on.

    Returns
    -------
    Comparison
        The differences and the losses.
    """
    runs = []
    for strategy in (None, distribute.make_strategy("mirrored", devices)):
        runtime.set_seed(seed, deterministic=False)
        with (strategy or tf.distribute.get_strategy()).scope():
            net = build_model(model)
            train.compile_model(net, learning_rate=learning_rate, optimizer=optimizer)
        if runs:
            net.set_weights(runs[0][0])
        start = net.get_weights()
        history = train.train(net, data, epochs=epochs, batch_size=batch_size, loop=loop,
                              seed=seed, strategy=strategy, verbose=0)
        runs.append((start, net.get_weights(), history, strategy))
    (w0, w_one, h_one, _), (_, w_rep, h_rep, mirrored) = runs
    return Comparison(
        loop=loop,
        replicas=mirrored.num_replicas_in_sync,
        steps=epochs * -(-len(data.y_train) // batch_size),
        max_difference=max(float(np.max(np.abs(a - b))) for a, b in zip(w_one, w_rep)),
        max_update=max(float(np.max(np.abs(a - b))) for a, b in zip(w_one, w0)),
        loss_one=h_one.last("loss"),
        loss_replicas=h_rep.last("loss"),
    )


def throughput(
    data: CifarData,
    strategy=None,
    *,
    loop: str = "fit",
    batch_size: int = 128,
    epochs: int = 3,
    model: str = "seed",
    seed: int = 0,
) -> float:
    """Training speed in images per second: the fastest epoch after the first (chapter 10).

    The first epoch pays for tracing and warming up and is not counted. Of the
    others the fastest is kept, the one least disturbed by other programs.

    Parameters
    ----------
    data : CifarData
        Training data; give it no validation split, or its evaluation is timed too.
    strategy : tf.distribute.Strategy, optional
        Where to train (one device when omitted).
    loop : {"fit", "custom"}
        Which training loop.
    batch_size : int
        Global batch size.
    epochs : int
        At least 2.
    model : str
        A name for :func:`cifar_tutorial.models.build_model`.
    seed : int
        Seed. Op determinism is left as the process has it
        (:func:`cifar_tutorial.runtime.set_seed`): where it is on, as after every
        chapter's setup cell, the speed is that of the deterministic kernels.

    Returns
    -------
    float
        Training images per second in the fastest epoch after the first.
    """
    if epochs < 2:
        raise ValueError("epochs must be at least 2: the first one warms up")
    runtime.set_seed(seed, deterministic=False)
    with (strategy or tf.distribute.get_strategy()).scope():
        net = build_model(model)
        train.compile_model(net, learning_rate=1e-4)
    history = train.train(net, data, epochs=epochs, batch_size=batch_size, loop=loop,
                          seed=seed, strategy=strategy, verbose=0)
    return len(data.y_train) / min(history["seconds"][1:])
