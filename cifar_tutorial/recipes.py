"""A fast CIFAR-10 training recipe for CPUs, in the spirit of airbench.

The recipe is explained in chapter 9 ("Going further"). In short:

* a small VGG-like network (:mod:`cifar_tutorial.fastnet`): after the input
  standardization, a frozen 2x2 "patch-whitening" convolution whose
  filters are the eigenvectors of the covariance of 2x2 image patches, then
  three blocks of (conv 3x3, max-pool, BatchNorm, GELU, conv 3x3, BatchNorm,
  GELU) and a linear head on a global max-pool;
* dirac (identity) initialization of the 3x3 convolutions, BatchNorm without a
  learned scale and with a 64x larger learning rate on its bias;
* Nesterov SGD with a triangular learning-rate schedule (:class:`TriangleSchedule`),
  weight decay added to the gradient, label smoothing 0.2 (Keras'
  ``CategoricalCrossentropy``) and Lookahead (an exponential moving average that
  the weights are pulled back to every few steps);
* random 2-pixel translation (reflect padding) and alternating horizontal
  flips as augmentation, done on whole uint8 arrays with numpy;
* test-time augmentation, :func:`cifar_tutorial.evaluate.predict_logits`: the mean
  of the logits of the image and its mirror (and, at ``"flip_shift"``, of 1-pixel
  translated copies);
* where the hardware computes bfloat16 natively
  (:func:`cifar_tutorial.runtime.choose_precision`), mixed bfloat16 precision
  (about 1.8x faster than float32 on a 2-core AVX512-BF16 CPU), except for the
  input normalization and the whitening layer, which stay float32 (in bfloat16
  the whitened high-frequency channels are mostly rounding noise);
* the batch norms trained by one fused op each and the GELUs compiled by XLA
  (:class:`cifar_tutorial.fastnet.FusedBatchNorm`,
  :func:`cifar_tutorial.fastnet.gelu_compiled`): the arithmetic of Keras' own layers
  up to rounding, with far fewer passes over the feature maps (the step about 1.3
  times as fast in bfloat16 on a 2-core Zen 5 EPYC, see the benchmarks page).

The network, :func:`cifar_tutorial.fastnet.build_fast_net`, and its whitening
filters, :func:`cifar_tutorial.fastnet.whitening_filters`, have a module of their
own. Every setting of the recipe, with its unit, is a field of
:class:`FastHyperparameters`. :func:`train_fast` takes uint8 images of shape
``(N, 32, 32, 3)`` and integer labels, as :func:`cifar_tutorial.data.read_image_folder`
returns them; :func:`train_fast_on` takes a :class:`~cifar_tutorial.data.CifarData`.
Both return the trained model, which takes images in ``[0, 1]`` like every model of
the package, and a :class:`~cifar_tutorial.records.History`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cifar_tutorial import runtime
from cifar_tutorial.checkpoints import CHECKPOINT_DIR, Checkpoint, interrupted
from cifar_tutorial.data import CifarData
from cifar_tutorial.errors import TrainingError
from cifar_tutorial.evaluate import TTA_LEVELS, predict_logits
from cifar_tutorial.fastnet import build_fast_net, whitening_filters
from cifar_tutorial.records import History, check_output_folder

__all__ = [
    "FastHyperparameters",
    "HELD_OUT",
    "TriangleSchedule",
    "augment_epoch",
    "bias_gradient_scales",
    "train_fast",
    "train_fast_on",
]


@dataclasses.dataclass(frozen=True)
class FastHyperparameters:
    """Every setting of the fast recipe, with its unit (chapter 9).

    The defaults are the book's: airbench94's (KellerJordan/cifar10-airbench,
    ``airbench94.py``) except where the CPU asks for less (batch 512, 10 epochs)
    or Keras counts differently (``bn_momentum``); ``tests/test_recipes.py``
    checks which ones match. Unlike airbench94, Lookahead starts at the first
    step, not after three epochs. Change one with :func:`dataclasses.replace`,
    e.g. ``dataclasses.replace(FastHyperparameters(), epochs=12)``.

    As in airbench, ``lr`` and ``weight_decay`` are given per 1024 images with the
    "kilostep" convention: the learning rate of the batch-mean loss is
    ``lr * batch_size / (1024 * (1 + 1 / (1 - momentum)))``, and the decay added
    to every gradient is ``weight_decay / lr`` times the weight.

    Attributes
    ----------
    epochs : float
        Passes over the training set (fractions allowed), in epochs.
    batch_size : int
        Images per optimizer step; the last incomplete batch of an epoch is dropped.
    widths : tuple of int
        Channels of the three conv blocks.
    lr : float
        Peak learning rate, per 1024 images (see above).
    lr_start : float
        Learning rate of the first step, as a fraction of ``lr``.
    lr_end : float
        Learning rate after the last step, as a fraction of ``lr``.
    warmup : float
        Where the schedule peaks, as a fraction of all steps: a triangle, linear
        from ``lr_start`` up to 1 and then down to ``lr_end``
        (:class:`TriangleSchedule`).
    momentum : float
        Nesterov momentum of SGD, in ``[0, 1)``.
    weight_decay : float
        Weight decay per 1024 images (see above).
    bias_scaler : float
        Factor on the gradients of the batch-norm biases (their ``beta``): they
        learn this many times faster than the other weights.
    label_smoothing : float
        Share of each target spread evenly over the classes, in ``[0, 1)``.
    translate : int
        Largest random shift of a training image, in pixels (0 turns it off).
    lookahead : bool
        Pull the weights back to their exponential moving average every
        ``lookahead_every`` steps; the last step leaves the average in the model.
    lookahead_every : int
        Steps between two Lookahead updates.
    lookahead_decay_base : float
        Decay of the average per step, in ``(0, 1]``: at step ``t`` of ``T`` an
        update keeps ``lookahead_decay_base ** lookahead_every *
        (t / T) ** lookahead_decay_pow`` of the average.
    lookahead_decay_pow : float
        Power of the fraction of training done in that weight (dimensionless):
        the larger, the later the average starts to count.
    whiten_patch : int
        Height and width of the whitening patches and filters, in pixels.
    whiten_images : int
        Number of training images (the first ones) whose patches give the
        whitening filters.
    whiten_eps : float
        Added to the eigenvalues of the patch covariance (pixel values standardized
        to unit variance) before the square root, see
        :func:`~cifar_tutorial.fastnet.whitening_filters`.
    whiten_bias_epochs : int
        Epochs during which the bias of the whitening layer learns; it is frozen
        afterwards (its kernel never learns).
    bn_momentum : float
        Keras batch-norm momentum: the weight of the old running statistics at
        each step (PyTorch's ``momentum`` is one minus this).
    bn_eps : float
        Added to the batch variance before the square root, in squared units of
        the layer's input.
    init_scale : float
        Variance of the initial weights of the 3x3 convolutions (outside their
        identity part) and of the head, times their fan-in (PyTorch's default,
        which airbench keeps, is 1/3).
    scaling_factor : float
        The logits are multiplied by this constant.
    tta : str
        Test-time augmentation of the final held-out accuracy, one of
        :data:`~cifar_tutorial.evaluate.TTA_LEVELS`: it is reported at every
        level up to this one (airbench's ``tta_level`` 0, 1, 2).
    fused_norm : bool
        Train the batch norms with one fused op each
        (:class:`~cifar_tutorial.fastnet.FusedBatchNorm`): the same arithmetic up
        to rounding, faster.
    compiled_gelu : bool
        Compute the GELUs with XLA (:func:`~cifar_tutorial.fastnet.gelu_compiled`):
        the same function, faster.
    """

    epochs: float = 10.0
    batch_size: int = 512
    widths: tuple[int, int, int] = (64, 256, 256)
    lr: float = 11.5
    lr_start: float = 0.2
    lr_end: float = 0.07
    warmup: float = 0.23
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    translate: int = 2
    lookahead: bool = True
    lookahead_every: int = 5
    lookahead_decay_base: float = 0.95
    lookahead_decay_pow: float = 3.0
    whiten_patch: int = 2
    whiten_images: int = 5000
    whiten_eps: float = 5e-4
    whiten_bias_epochs: int = 3
    bn_momentum: float = 0.6
    bn_eps: float = 1e-12
    init_scale: float = 1.0 / 3.0
    scaling_factor: float = 1.0 / 9.0
    tta: str = "flip_shift"
    fused_norm: bool = True
    compiled_gelu: bool = True

    def __post_init__(self) -> None:
        if self.tta not in TTA_LEVELS:
            raise ValueError(f"tta must be one of {', '.join(TTA_LEVELS)}; got {self.tta!r}")

# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def augment_epoch(
    images: np.ndarray,
    flip_mask: np.ndarray,
    rng: np.random.Generator,
    translate: int = 2,
) -> np.ndarray:
    """Flip and randomly translate a whole uint8 array at once (chapter 9).

    Each image is mirrored where ``flip_mask`` is true, reflect-padded by
    ``translate`` pixels and cropped back to its size at a random offset. The
    work is grouped by offset, so it costs a few array copies, not a Python
    loop over images.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W, C)`` uint8 images.
    flip_mask : numpy.ndarray
        ``(N,)`` booleans: which images to mirror left-right.
    rng : numpy.random.Generator
        Source of the crop offsets.
    translate : int
        Largest shift in pixels (0 disables translation).

    Returns
    -------
    numpy.ndarray
        A new ``(N, H, W, C)`` uint8 array.
    """
    out = images.copy()
    out[flip_mask] = out[flip_mask, :, ::-1]
    if translate <= 0:
        return out
    n, h, w, _ = images.shape
    t = translate
    padded = np.pad(out, ((0, 0), (t, t), (t, t), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * t + 1, size=n)
    dx = rng.integers(0, 2 * t + 1, size=n)
    for oy in range(2 * t + 1):
        for ox in range(2 * t + 1):
            idx = np.nonzero((dy == oy) & (dx == ox))[0]
            if idx.size:
                out[idx] = padded[idx, oy : oy + h, ox : ox + w]
    return out


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class TriangleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The recipe's learning rate: a triangle over the steps of the run (chapter 9).

    At step ``s`` (0-based) of ``total_steps``, ``peak`` times a factor that
    goes linearly from ``start`` at step 0 up to 1 at step
    ``int(warmup * total_steps)``, then linearly down to ``end`` at step
    ``total_steps``, as airbench94's ``triangle``. Given to
    ``keras.optimizers.SGD`` as its ``learning_rate``, it is evaluated at the
    optimizer's step count.

    Parameters
    ----------
    peak : float
        Largest learning rate.
    total_steps : int
        Steps of the whole run.
    start, end : float
        The first and the last value, as fractions of ``peak``.
    warmup : float
        Where the triangle peaks, as a fraction of ``total_steps``.
    """

    def __init__(self, peak: float, total_steps: int, start: float, end: float,
                 warmup: float) -> None:
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.start, self.end, self.warmup = float(start), float(end), float(warmup)

    def __call__(self, step: Any) -> Any:
        """The learning rate at ``step``, a float32 scalar."""
        s = keras.ops.cast(step, "float32")
        top = float(max(int(self.warmup * self.total_steps), 1))
        rest = float(max(self.total_steps - top, 1))
        up = self.start + (1.0 - self.start) * s / top
        down = 1.0 + (self.end - 1.0) * (s - top) / rest
        return self.peak * keras.ops.where(s < top, up, down)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "start": self.start,
                "end": self.end, "warmup": self.warmup}


def bias_gradient_scales(model: keras.Model, scaler: float) -> list[float]:
    """Gradient factors of the trainable variables: ``scaler`` for batch-norm biases (chapter 9).

    The biases are found by layer type, the ``beta`` of every
    ``keras.layers.BatchNormalization`` (:class:`~cifar_tutorial.fastnet.FusedBatchNorm`
    included), so renaming a layer cannot drop them. Every other variable gets 1.

    Parameters
    ----------
    model : keras.Model
        A built model.
    scaler : float
        The factor of the biases (``FastHyperparameters.bias_scaler``).

    Returns
    -------
    list of float
        One factor per trainable variable, in order.
    """
    biases = {id(layer.beta) for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization) and layer.center}
    return [scaler if id(v) in biases else 1.0 for v in model.trainable_variables]


class _Steps:
    """The recipe's optimizer, training step and Lookahead, built for one network."""

    def __init__(self, model: keras.Model, hyp: FastHyperparameters, num_classes: int,
                 total_steps: int) -> None:
        self.model, self.hyp, self.total_steps = model, hyp, total_steps
        lr_mean = hyp.lr * hyp.batch_size / (1024 * (1 + 1 / (1 - hyp.momentum)))
        decay = hyp.weight_decay / hyp.lr
        self.schedule = TriangleSchedule(lr_mean, total_steps, hyp.lr_start, hyp.lr_end,
                                         hyp.warmup)
        self.optimizer = keras.optimizers.SGD(
            learning_rate=self.schedule, momentum=hyp.momentum, nesterov=True
        )
        variables = model.trainable_variables
        self.optimizer.build(variables)
        grad_scales = bias_gradient_scales(model, hyp.bias_scaler)
        # 1.0 while the whitening bias learns, then 0.0 (no gradient, no decay).
        self.whiten_gate = tf.Variable(1.0, trainable=False, dtype=tf.float32)
        whiten_bias = model.get_layer("whiten").bias
        gates = [self.whiten_gate if v is whiten_bias else None for v in variables]
        loss_fn = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=hyp.label_smoothing)
        optimizer = self.optimizer

        @tf.function(autograph=False)
        def train_step(images: Any, labels: Any) -> tuple[Any, Any]:
            x = keras.ops.cast(images, "float32") / 255.0  # uint8 to [0, 1]
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = loss_fn(keras.ops.one_hot(labels, num_classes), logits)
            grads = tape.gradient(loss, variables)
            grads = [g * s + decay * v for g, s, v in zip(grads, grad_scales, variables)]
            grads = [g if gate is None else g * gate for g, gate in zip(grads, gates)]
            optimizer.apply(grads, variables)
            correct = keras.ops.sum(
                keras.ops.cast(keras.ops.argmax(logits, axis=-1) == labels, "float32")
            )
            return loss, correct

        # Lookahead, as airbench94 does it: every few steps the weights (trainable
        # ones and batch-norm statistics alike) move to their running average. Keras'
        # SGD(use_ema=True) averages only the trainable weights with a fixed
        # momentum, so the growing decay below is written out here.
        all_weights = model.weights
        slow = [tf.Variable(w.value, trainable=False) for w in all_weights]
        self.slow = slow

        @tf.function(autograph=False)
        def lookahead_update(alpha: Any) -> None:
            for s, w in zip(slow, all_weights):
                s.assign(alpha * s + (1.0 - alpha) * w.value)
                w.assign(s)

        self.train_step, self.lookahead_update = train_step, lookahead_update
        done = np.arange(total_steps + 1) / total_steps
        self.alpha_schedule = (hyp.lookahead_decay_base ** hyp.lookahead_every
                               * done ** hyp.lookahead_decay_pow)

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        return float(keras.ops.convert_to_numpy(self.schedule(step)))

    def run(self, step: int, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Take optimizer step ``step`` (0-based); return its loss and number correct."""
        loss, correct = self.train_step(tf.constant(images), tf.constant(labels))
        done = step + 1
        if self.hyp.lookahead and done % self.hyp.lookahead_every == 0:
            self.lookahead_update(tf.constant(float(self.alpha_schedule[done]), tf.float32))
        elif self.hyp.lookahead and done == self.total_steps:
            self.lookahead_update(tf.constant(1.0, tf.float32))  # end on the average
        return float(loss), float(correct)

    def _state(self) -> dict[str, list]:
        return {"weights": self.model.weights, "optimizer": self.optimizer.variables,
                "lookahead": self.slow}

    def save(self, path: str) -> None:
        """Write every variable of the run (weights, SGD momenta, Lookahead) to an ``.npz`` file."""
        arrays = {f"{group}/{i}": keras.ops.convert_to_numpy(v)
                  for group, variables in self._state().items() for i, v in enumerate(variables)}
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    def load(self, path: str | os.PathLike) -> None:
        """Put back the variables :meth:`save` wrote, exactly."""
        with np.load(path) as arrays:
            for group, variables in self._state().items():
                if sum(k.startswith(f"{group}/") for k in arrays.files) != len(variables):
                    raise TrainingError(f"{path} does not fit this network ({group}); "
                                        "start afresh with --no-resume")
                for i, v in enumerate(variables):
                    v.assign(arrays[f"{group}/{i}"])


def _open_run(out_dir: str | os.PathLike | None, fingerprint: dict[str, Any], resume: bool,
              ) -> tuple[Checkpoint | None, dict[str, Any] | None]:
    """The checkpoint folder of a run in ``out_dir``, and the state saved there (if resuming)."""
    if out_dir is None:
        return None, None
    checkpoint = Checkpoint(check_output_folder(out_dir) / CHECKPOINT_DIR)
    return checkpoint, (checkpoint.read_run(fingerprint) if resume else None)


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, tta: str) -> float:
    logits = predict_logits(model, x, tta=tta, batch_size=1000)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y).reshape(-1)))


HELD_OUT: tuple[str, ...] = ("val", "test")
"""The names of :func:`train_fast`'s held-out images, the validation split or the test set."""


def _epoch_steps(steps: _Steps, images: np.ndarray, labels: np.ndarray, order: np.ndarray,
                 step: int, total_steps: int, batch_size: int,
                 bar: keras.utils.Progbar | None, trace: bool,
                 ) -> tuple[int, float, float, int, float | None]:
    """One epoch of :func:`train_fast`: whole batches of ``images[order]``, up to ``total_steps``.

    Returns the steps done after it, the sum of the batches' losses, the number of
    images classified right, the number seen, and (with ``trace``) the seconds of the
    first step, which traces the graph (``None`` without ``trace``).
    """
    losses, correct, seen, tracing = 0.0, 0.0, 0, None
    for b in range(len(order) // batch_size):
        if step >= total_steps:
            break
        idx = order[b * batch_size : (b + 1) * batch_size]
        t0 = time.perf_counter()
        loss, corr = steps.run(step, images[idx], labels[idx])
        step += 1
        losses, correct, seen = losses + loss, correct + corr, seen + len(idx)
        if trace and tracing is None:
            tracing = time.perf_counter() - t0
        if bar is not None:
            bar.update(b + 1, [("loss", losses / (b + 1)), ("accuracy", correct / seen)])
    return step, losses, correct, seen, tracing


def train_fast(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_heldout: np.ndarray | None = None,
    y_heldout: np.ndarray | None = None,
    hyp: FastHyperparameters = FastHyperparameters(),
    *,
    heldout: str = "val",
    seed: int = 0,
    precision: str = "auto",
    deterministic: bool = False,
    eval_every_epoch: bool = True,
    max_steps: int | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    verbose: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[keras.Model, History]:
    """Train the fast network of chapter 9 ("Going further") on uint8 arrays.

    Given ``out_dir``, every finished epoch is saved in ``out_dir/checkpoint``
    (:class:`~cifar_tutorial.checkpoints.Checkpoint`: the weights, SGD momenta,
    Lookahead average, the augmentation's random state and the history), and a
    run started again with the same data and settings resumes from there; with
    ``deterministic=True`` it ends with the weights an uninterrupted run ends with.

    Parameters
    ----------
    x_train, y_train : numpy.ndarray
        ``(N, 32, 32, 3)`` uint8 images and ``(N,)`` integer labels.
    x_heldout, y_heldout : numpy.ndarray, optional
        Held-out images and labels, evaluated after every epoch (if
        ``eval_every_epoch``) and at the end.
    hyp : FastHyperparameters
        The recipe's settings; the defaults are the book's.
    heldout : {"val", "test"}
        What the held-out images are, the validation split or the test set: the
        log and the history name their accuracy ``val_accuracy`` or
        ``test_accuracy``.
    seed : int
        Seeds Python, NumPy, TensorFlow (:func:`cifar_tutorial.runtime.set_seed`)
        and the augmentation.
    precision : {"auto", "float32", "mixed_bfloat16"}
        See :func:`cifar_tutorial.runtime.choose_precision`.
    deterministic : bool
        Turn on TensorFlow's op determinism. Off by default: on the 2-core CPU it
        cost about 40% of the speed. ``False`` leaves it as it is, so it stays on
        after any earlier :func:`~cifar_tutorial.runtime.set_seed` with
        ``deterministic=True`` in the same process (every chapter's setup cell
        makes one).
    eval_every_epoch : bool
        Evaluate the held-out set after each epoch (not counted in training time).
    max_steps : int, optional
        Stop after this many steps (for timing probes).
    out_dir : path, optional
        Folder for the per-epoch checkpoint; none without it.
    resume : bool
        Continue from the checkpoint in ``out_dir`` if there is one (else replace it).
    verbose : int
        0 silent, 1 one line per epoch, 2 also a progress bar within each epoch.
    log : callable, optional
        Where lines are written (default: ``print`` with flushing).

    Returns
    -------
    model : keras.Model
        The trained network (:func:`~cifar_tutorial.fastnet.build_fast_net`): it
        takes images in ``[0, 1]``.
    history : History
        One record per epoch: ``loss`` (label-smoothed) and ``accuracy`` on the
        augmented training images, ``<heldout>_accuracy`` on the held-out images
        (NaN when not evaluated; ``<heldout>_loss`` is always NaN), ``lr`` (of
        the epoch's last step), ``seconds`` (training time, the first step
        excluded), ``images_per_s``, ``cpu_per_wall`` (process CPU seconds per
        wall second, about the number of cores when nothing else runs) and
        ``elapsed_seconds`` (training time so far). Its ``summary`` holds
        ``precision``, ``batch_size``, ``epochs``, ``steps``, ``params``,
        ``train_seconds`` (the sum of ``seconds``), ``first_step_seconds``
        (tracing), ``images_per_s`` and, with held-out data,
        ``<heldout>_accuracy`` (a dict from each TTA level up to ``hyp.tta`` to
        the final held-out accuracy), ``epoch_to_90`` and ``seconds_to_90``
        (first epoch at 90% or more, ``None`` if none).

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C; the finished epochs stay in the checkpoint.
    CheckpointError
        If ``out_dir`` holds the checkpoint of a run with other settings (a
        :class:`~cifar_tutorial.errors.CheckpointError`).
    """
    if log is None:
        log = lambda line: print(line, flush=True)  # noqa: E731
    if heldout not in HELD_OUT:
        raise ValueError(f"heldout must be one of {', '.join(HELD_OUT)}; got {heldout!r}")
    precision = runtime.choose_precision(precision)
    runtime.set_seed(seed, deterministic=deterministic)
    rng = np.random.default_rng(seed)
    x_train = np.asarray(x_train, dtype=np.uint8)
    y_train = np.asarray(y_train, dtype=np.int32).reshape(-1)
    n = len(x_train)
    steps_per_epoch = n // hyp.batch_size
    total_steps = int(math.ceil(hyp.epochs * steps_per_epoch))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    num_classes = int(y_train.max()) + 1

    kernel, _ = whitening_filters(x_train, hyp)
    model = build_fast_net(hyp, whiten_kernel=kernel, num_classes=num_classes,
                           precision=precision, seed=seed)
    steps = _Steps(model, hyp, num_classes, total_steps)
    has_heldout = x_heldout is not None and y_heldout is not None
    acc_key = f"{heldout}_accuracy"
    flip_mask = rng.random(n) < 0.5
    fingerprint = json.loads(json.dumps({  # as state.json gives it back: lists, not tuples
        "model": "fast", "hyperparameters": dataclasses.asdict(hyp), "seed": seed,
        "precision": precision, "train_images": n, "total_steps": total_steps,
    }))
    checkpoint, state = _open_run(out_dir, fingerprint, resume)
    history, step, elapsed, first_step = History(), 0, 0.0, None
    if state is not None:
        steps.load(checkpoint.file(state))
        rng.bit_generator.state = state["rng"]
        history = History.from_dict(state["history"])
        step, elapsed, first_step = state["steps_done"], state["elapsed"], state["first_step"]
        if verbose:
            log(f"Resuming after epoch {len(history)} from {checkpoint.folder.name}/")
    traced = False  # the first step of each session traces the graph: timed apart
    while step < total_steps:
        epoch = len(history) + 1
        mask = flip_mask if epoch % 2 == 1 else ~flip_mask
        steps.whiten_gate.assign(1.0 if epoch <= hyp.whiten_bias_epochs else 0.0)
        t_epoch, cpu_epoch = time.perf_counter(), time.process_time()
        bar = (keras.utils.Progbar(min(steps_per_epoch, total_steps - step),
                                   stateful_metrics=["loss", "accuracy"]) if verbose >= 2 else None)
        try:
            augmented = augment_epoch(x_train, mask, rng, hyp.translate)
            step, losses, correct, seen, tracing = _epoch_steps(
                steps, augmented, y_train, rng.permutation(n), step, total_steps,
                hyp.batch_size, bar, trace=not traced)
        except KeyboardInterrupt:
            raise interrupted(epoch - 1, len(history), checkpoint) from None
        if tracing is not None:
            traced = True
            first_step = tracing if first_step is None else first_step
            t_epoch += tracing  # tracing is reported apart
        dt = time.perf_counter() - t_epoch
        elapsed += dt
        acc = float("nan")
        if has_heldout and (eval_every_epoch or step >= total_steps):
            acc = _accuracy(model, x_heldout, y_heldout, "none")
        history.records.append({
            "epoch": epoch, "loss": losses / max(1, seen // hyp.batch_size),
            "accuracy": correct / max(1, seen), f"{heldout}_loss": float("nan"), acc_key: acc,
            "lr": steps.learning_rate(step - 1),
            "seconds": dt, "images_per_s": seen / dt,
            "cpu_per_wall": (time.process_time() - cpu_epoch) / dt, "elapsed_seconds": elapsed,
        })
        if verbose:
            log(_epoch_line(history.records[-1], heldout))
        if checkpoint is not None:
            checkpoint.write_with(steps.save, {
                "epochs_done": len(history), "fingerprint": fingerprint,
                "history": history.to_dict(), "steps_done": step, "elapsed": elapsed,
                "first_step": first_step, "rng": rng.bit_generator.state,
            }, suffix=".npz")
    history.summary = _summary(history, hyp, precision, step, first_step, int(model.count_params()))
    if has_heldout:
        history.summary.update(_held_out_summary(history, model, x_heldout, y_heldout, hyp.tta,
                                                 acc_key))
    return model, history


def _epoch_line(r: dict[str, float], heldout: str) -> str:
    line = (
        f"epoch {r['epoch']:2d}  {r['seconds']:5.1f}s  {r['images_per_s']:4.0f} img/s  "
        f"loss {r['loss']:.4f}  acc {r['accuracy']:.4f}"
    )
    if not math.isnan(r[f"{heldout}_accuracy"]):
        line += f"  {heldout}_acc {r[f'{heldout}_accuracy']:.4f}"
    return line + f"  cores {r['cpu_per_wall']:.2f}"  # busy cores: CPU seconds per second


def _summary(history: History, hyp: FastHyperparameters, precision: str, steps: int,
             first_step: float | None, params: int) -> dict[str, Any]:
    train_seconds = sum(history["seconds"])
    return {
        "precision": precision,
        "batch_size": hyp.batch_size,
        "epochs": hyp.epochs,
        "steps": steps,
        "params": params,
        "train_seconds": train_seconds,
        "first_step_seconds": first_step,
        "images_per_s": steps * hyp.batch_size / train_seconds if train_seconds else None,
    }


def _held_out_summary(history: History, model: keras.Model, x: np.ndarray, y: np.ndarray,
                      tta: str, key: str) -> dict[str, Any]:
    levels = TTA_LEVELS[: TTA_LEVELS.index(tta) + 1]
    reached = [r for r in history.records if r[key] >= 0.9]
    return {
        key: {level: _accuracy(model, x, y, level) for level in levels},
        "epoch_to_90": reached[0]["epoch"] if reached else None,
        "seconds_to_90": reached[0]["elapsed_seconds"] if reached else None,
    }


def train_fast_on(
    data: CifarData,
    hyp: FastHyperparameters = FastHyperparameters(),
    *,
    seed: int = 0,
    verbose: int = 1,
    **kwargs: Any,
) -> tuple[keras.Model, History]:
    """Run :func:`train_fast` on a :class:`~cifar_tutorial.data.CifarData` (chapter 9).

    This is what ``python -m cifar_tutorial train --model fast`` calls, with
    ``out_dir`` for a checkpoint after every epoch. The validation split, when there
    is one, is scored after every epoch; the test split is not used.

    Parameters
    ----------
    data : CifarData
        The data, as loaded by :func:`cifar_tutorial.data.load_cifar10`.
    hyp : FastHyperparameters
        The recipe's settings.
    seed : int
        Seed of the run.
    verbose : int
        0 silent, 1 one line per epoch, 2 also a progress bar within each epoch.
    **kwargs
        Further keywords of :func:`train_fast` (``precision``, ``deterministic``,
        ``out_dir``, ``resume``, ...).

    Returns
    -------
    model : keras.Model
        The trained net; it takes images in ``[0, 1]``.
    history : History
        As :func:`train_fast` returns it, ``val_accuracy`` on the validation split.
    """
    has_val = len(data.y_val) > 0
    return train_fast(
        data.x_train, data.y_train,
        data.x_val if has_val else None, data.y_val if has_val else None,
        hyp, heldout="val", seed=seed, verbose=verbose, eval_every_epoch=has_val, **kwargs,
    )
