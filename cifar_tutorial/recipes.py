"""A fast CIFAR-10 training recipe for CPUs, in the spirit of airbench.

The recipe is explained in chapter 8 ("Going further"). In short:

* a small VGG-like network: a frozen 2x2 "patch-whitening" convolution whose
  filters are the eigenvectors of the covariance of 2x2 image patches, then
  three blocks of (conv 3x3, max-pool, BatchNorm, GELU, conv 3x3, BatchNorm,
  GELU) and a linear head on a global max-pool;
* dirac (identity) initialisation of the 3x3 convolutions, BatchNorm without a
  learned scale and with a 64x larger learning rate on its bias;
* Nesterov SGD with a triangular learning-rate schedule, weight decay added to
  the gradient, label smoothing 0.2 and Lookahead (an exponential moving
  average that the weights are pulled back to every few steps);
* random 2-pixel translation (reflect padding) and alternating horizontal
  flips as augmentation, done on whole uint8 arrays with numpy;
* test-time augmentation: the mean of the logits of the image and its mirror
  (and, at level 2, of 1-pixel translated copies);
* on CPUs with bfloat16 instructions, mixed bfloat16 precision (about 1.8x
  faster than float32 on a 2-core AVX512-BF16 CPU), except for the input
  normalisation and the whitening layer, which stay float32 (in bfloat16 the
  whitened high-frequency channels are mostly rounding noise).

The public entry points are array based: :func:`train_fast` takes uint8 images
of shape ``(N, 32, 32, 3)`` and integer labels, as
:func:`cifar_tutorial.data.read_image_folder` returns them; :func:`train_fast_on`
takes a :class:`~cifar_tutorial.data.CifarData`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

import keras
import tensorflow as tf

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "whitening_filters",
    "build_fast_net",
    "augment_epoch",
    "evaluate_tta",
    "predict_logits_tta",
    "choose_precision",
    "train_fast",
    "train_fast_on",
]

#: Per-channel mean and standard deviation of the CIFAR-10 training images (0-255 scale).
CIFAR10_MEAN = np.array([125.307, 122.950, 113.865], dtype=np.float32)
CIFAR10_STD = np.array([62.993, 62.089, 66.705], dtype=np.float32)

# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def augment_epoch(
    images: np.ndarray,
    flip_mask: np.ndarray,
    rng: np.random.Generator,
    translate: int = 2,
) -> np.ndarray:
    """Flip and randomly translate a whole uint8 array at once (chapter 8).

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
# Network
# --------------------------------------------------------------------------


def whitening_filters(
    images: np.ndarray, patch_size: int = 2, eps: float = 5e-4, max_images: int = 5000
) -> tuple[np.ndarray, np.ndarray]:
    """Patch-whitening filters from the covariance of image patches (chapter 8).

    The ``patch_size x patch_size x 3`` patches of the (normalised) images are
    collected, their covariance is diagonalised, and every eigenvector ``v``
    with eigenvalue ``l`` gives the filter ``v / sqrt(l + eps)``; the negated
    filters are appended so that a following GELU keeps both signs.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W, 3)`` uint8 training images.
    patch_size : int
        Height and width of the patches (and of the convolution kernel).
    eps : float
        Added to the eigenvalues before the square root.
    max_images : int
        At most this many (the first) images are used.

    Returns
    -------
    kernel : numpy.ndarray
        float32 Keras conv kernel ``(patch_size, patch_size, 3, 2 * patch_size**2 * 3)``.
    eigenvalues : numpy.ndarray
        The eigenvalues, largest first.
    """
    x = (images[:max_images].astype(np.float32) - CIFAR10_MEAN) / CIFAR10_STD
    n, h, w, c = x.shape
    p = patch_size
    # patches ordered (kh, kw, c) like a Keras kernel
    cols = [x[:, i : h - p + 1 + i, j : w - p + 1 + j, :] for i in range(p) for j in range(p)]
    patches = np.stack(cols, axis=3).reshape(-1, p * p * c).astype(np.float64)
    patches -= patches.mean(axis=0)
    cov = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = eigenvectors / np.sqrt(eigenvalues + eps)  # columns are filters
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(p, p, c, 2 * p * p * c).astype(np.float32)
    return kernel, eigenvalues.astype(np.float32)


@keras.saving.register_keras_serializable(package="cifar_tutorial")
class _DiracInit(keras.initializers.Initializer):
    """Identity on the first ``in_channels`` filters, a base initialiser elsewhere."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        kh, kw, cin, cout = shape
        base = keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=self.seed
        )(shape, dtype=dtype)
        n = min(cin, cout)
        eye = np.zeros(shape, dtype=np.float32)
        eye[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        mask = np.ones(shape, dtype=np.float32)
        mask[:, :, :, :n] = 0.0
        return base * keras.ops.convert_to_tensor(mask, dtype=dtype) + keras.ops.convert_to_tensor(
            eye, dtype=dtype
        )

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar_tutorial")
def gelu_tanh(x: Any) -> Any:
    """GELU with the tanh approximation (cheaper on some CPUs; chapter 8)."""
    return keras.activations.gelu(x, approximate=True)


def build_fast_net(
    widths: tuple[int, int, int] = (64, 256, 256),
    *,
    whiten_kernel: np.ndarray | None = None,
    num_classes: int = 10,
    bn_momentum: float = 0.6,
    scaling_factor: float = 1.0 / 9.0,
    precision: str = "float32",
    seed: int | None = None,
    gelu_approximate: bool = False,
) -> keras.Model:
    """Build the airbench-style network of the fast recipe (chapter 8).

    Input: uint8 (or float) images ``(N, 32, 32, 3)`` on the 0-255 scale;
    output: float32 logits ``(N, num_classes)``.

    Parameters
    ----------
    widths : tuple of int
        Channels of the three conv blocks.
    whiten_kernel : numpy.ndarray, optional
        Kernel from :func:`whitening_filters`; its shape fixes the first
        layer. If omitted, a 2x2 layer with 24 filters keeps its random init.
    num_classes : int
        Number of outputs.
    bn_momentum : float
        Keras BatchNorm momentum (weight of the old running statistics).
    scaling_factor : float
        The logits are multiplied by this constant.
    precision : str
        ``"float32"`` or ``"mixed_bfloat16"`` (set per layer, not globally;
        the input normalisation and the whitening layer stay float32).
    seed : int, optional
        Seed of the weight initialisers.
    gelu_approximate : bool
        Use the tanh approximation of GELU (not shown to be faster on the
        2-core CPU; the recipe uses the exact GELU).

    Returns
    -------
    keras.Model
        The (uncompiled) network.
    """
    if precision not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"unknown precision {precision!r}")
    dtype = precision
    seeds = iter(range(0 if seed is None else seed * 100, 10**9))

    def _seed() -> int | None:
        return None if seed is None else next(seeds)

    def _gelu(name: str, layer_dtype: str = dtype) -> keras.layers.Layer:
        # Named functions, not a lambda, so that saved models load in safe mode.
        return keras.layers.Activation(
            gelu_tanh if gelu_approximate else "gelu", name=name, dtype=layer_dtype
        )

    if whiten_kernel is None:
        whiten_shape = (2, 2, 3, 24)
    else:
        whiten_shape = tuple(whiten_kernel.shape)

    # The normalisation and the whitening layer always run in float32: the
    # whitening filters of the small eigenvalues are large differences of
    # neighbouring pixels, and in bfloat16 their outputs carry 10-35% rounding
    # noise. They cost well under 1% of the compute.
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Normalization(
        mean=CIFAR10_MEAN, variance=CIFAR10_STD**2, name="normalize", dtype="float32"
    )(keras.ops.cast(inputs, "float32"))
    whiten = keras.layers.Conv2D(
        whiten_shape[3],
        whiten_shape[:2],
        padding="valid",
        use_bias=True,
        name="whiten",
        dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=_seed()),
    )
    x = whiten(x)
    whiten.kernel.trainable = False
    if whiten_kernel is not None:
        whiten.kernel.assign(whiten_kernel)
    x = _gelu(name="whiten_gelu", layer_dtype="float32")(x)

    for b, width in enumerate(widths):
        for k in range(2):
            x = keras.layers.Conv2D(
                width,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer=_DiracInit(seed=_seed()),
                name=f"block{b}_conv{k}",
                dtype=dtype,
            )(x)
            if k == 0:
                x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool", dtype=dtype)(x)
            x = keras.layers.BatchNormalization(
                momentum=bn_momentum,
                epsilon=1e-12,
                scale=False,
                name=f"block{b}_bn{k}",
                dtype=dtype,
            )(x)
            x = _gelu(name=f"block{b}_gelu{k}")(x)

    x = keras.layers.GlobalMaxPooling2D(name="global_pool", dtype=dtype)(x)
    x = keras.layers.Dense(
        num_classes,
        use_bias=False,
        name="head",
        dtype=dtype,
        kernel_initializer=keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=_seed()
        ),
    )(x)
    x = keras.layers.Rescaling(scaling_factor, name="scale", dtype="float32")(x)
    outputs = keras.layers.Activation("linear", name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="fast_net")


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _logits_fn(model: keras.Model) -> Callable[[Any], Any]:
    fn = getattr(model, "_fast_logits_fn", None)
    if fn is None:

        @tf.function(reduce_retracing=True, autograph=False)
        def fn(x: Any) -> Any:
            return model(x, training=False)

        model._fast_logits_fn = fn
    return fn


def predict_logits_tta(
    model: keras.Model, images: np.ndarray, tta_level: int = 1, batch_size: int = 1000
) -> np.ndarray:
    """Logits with test-time augmentation (chapter 8).

    Parameters
    ----------
    model : keras.Model
        A network that maps uint8 images to logits.
    images : numpy.ndarray
        ``(N, 32, 32, 3)`` uint8 images.
    tta_level : int
        0: the images only; 1: mean with their mirror images; 2: also
        1-pixel translated copies (up-left and down-right, reflect padded),
        weighted 0.5 for the untranslated pair and 0.25 for each shifted pair.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    numpy.ndarray
        ``(N, num_classes)`` float32 logits.
    """
    fn = _logits_fn(model)

    def _run(x: np.ndarray) -> np.ndarray:
        parts = [
            np.asarray(fn(tf.constant(x[i : i + batch_size])))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts, axis=0).astype(np.float32)

    def _flip_mean(x: np.ndarray) -> np.ndarray:
        if tta_level == 0:
            return _run(x)
        return 0.5 * (_run(x) + _run(np.ascontiguousarray(x[:, :, ::-1])))

    logits = _flip_mean(images)
    if tta_level >= 2:
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        up_left = np.ascontiguousarray(padded[:, :32, :32])
        down_right = np.ascontiguousarray(padded[:, 2:, 2:])
        logits = 0.5 * logits + 0.25 * (_flip_mean(up_left) + _flip_mean(down_right))
    return logits


def evaluate_tta(
    model: keras.Model, x: np.ndarray, y: np.ndarray, tta_level: int = 1, batch_size: int = 1000
) -> float:
    """Accuracy of ``model`` on ``(x, y)`` with test-time augmentation (chapter 8).

    Parameters
    ----------
    model : keras.Model
        A network that maps uint8 images to logits.
    x : numpy.ndarray
        ``(N, 32, 32, 3)`` uint8 images.
    y : numpy.ndarray
        ``(N,)`` integer labels.
    tta_level : int
        See :func:`predict_logits_tta` (0 = no TTA, 1 = flip, 2 = flip + shifts).
    batch_size : int
        Images per forward pass.

    Returns
    -------
    float
        Fraction of correctly classified images.
    """
    logits = predict_logits_tta(model, x, tta_level=tta_level, batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(y).reshape(-1)))


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def choose_precision(precision: str = "auto") -> str:
    """Resolve ``"auto"`` to the precision the fast recipe uses on this CPU (chapter 8).

    ``mixed_bfloat16`` pays off on CPUs with native bfloat16 instructions
    (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``): measured 1.8x
    faster than float32 on a 2-core AVX512-BF16 CPU without AMX (365 vs 204
    images/s). Elsewhere the recipe keeps ``float32``.

    Parameters
    ----------
    precision : str
        ``"auto"``, ``"float32"`` or ``"mixed_bfloat16"``.

    Returns
    -------
    str
        ``"float32"`` or ``"mixed_bfloat16"``.
    """
    if precision != "auto":
        return precision
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return "float32"
    native_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return "mixed_bfloat16" if native_bf16 else "float32"


def _triangle(steps: int, start: float, peak: float, end: float) -> np.ndarray:
    """Learning-rate multipliers: linear from ``start`` up to 1 at ``peak`` (a fraction), down to ``end``."""
    xp = [0, int(peak * steps), steps]
    return np.interp(np.arange(steps + 1), xp, [start, 1.0, end]).astype(np.float32)


def train_fast(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    epochs: float = 10.0,
    batch_size: int = 512,
    seed: int = 0,
    precision: str = "auto",
    widths: tuple[int, int, int] = (64, 256, 256),
    lr: float = 11.5,
    momentum: float = 0.85,
    weight_decay: float = 0.0153,
    bias_scaler: float = 64.0,
    label_smoothing: float = 0.2,
    warmup: float = 0.23,
    translate: int = 2,
    lookahead: bool = True,
    whiten_bias_epochs: int = 3,
    deterministic: bool = False,
    eval_every_epoch: bool = True,
    tta_level: int = 1,
    max_steps: int | None = None,
    verbose: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Train the fast network of chapter 8 ("Going further") on uint8 arrays.

    Hyper-parameters follow airbench94: ``lr`` and ``weight_decay`` are given
    per 1024 examples with the "kilostep" convention, so the learning rate of
    the batch-mean loss is ``lr * batch_size / (1024 * (1 + 1 / (1 - momentum)))``
    and the decay added to every gradient is ``weight_decay / lr`` times the
    weight. BatchNorm biases learn ``bias_scaler`` times faster.

    Parameters
    ----------
    x_train, y_train : numpy.ndarray
        ``(N, 32, 32, 3)`` uint8 images and ``(N,)`` integer labels.
    x_test, y_test : numpy.ndarray, optional
        Held-out images and labels, evaluated after every epoch (if
        ``eval_every_epoch``) and at the end.
    epochs : float
        Passes over the training set (fractions allowed).
    batch_size : int
        Images per step; the last incomplete batch of an epoch is dropped.
    seed : int
        Seeds Python, numpy, TensorFlow and the augmentation.
    precision : str
        ``"auto"`` (see :func:`choose_precision`), ``"float32"`` or ``"mixed_bfloat16"``.
    widths : tuple of int
        Channels of the three conv blocks.
    lr, momentum, weight_decay, bias_scaler, label_smoothing : float
        Optimiser and loss settings (see above).
    warmup : float
        Fraction of the steps at which the triangular schedule peaks.
    translate : int
        Largest random shift in pixels.
    lookahead : bool
        Use the Lookahead moving average every 5 steps; the last step leaves
        the averaged weights in the model.
    whiten_bias_epochs : int
        Epochs during which the bias of the whitening layer learns; it is
        frozen afterwards (its kernel never learns).
    deterministic : bool
        Call ``tf.config.experimental.enable_op_determinism()``. Off by
        default: on the 2-core CPU it cost about 40% of the speed.
    eval_every_epoch : bool
        Evaluate the test set after each epoch (not counted in training time).
    tta_level : int
        TTA level of the final test accuracy (see :func:`predict_logits_tta`).
    max_steps : int, optional
        Stop after this many steps (for timing probes).
    verbose : int
        0 silent, 1 one line per epoch.
    log : callable, optional
        Where lines are written (default: ``print`` with flushing).

    Returns
    -------
    model : keras.Model
        The trained network.
    history : dict
        Per-epoch lists (``epoch_time``, ``images_per_s``, ``train_loss``,
        ``train_acc``, ``test_acc``, ``cpu_per_wall``: process CPU seconds per
        wall second, about the number of cores when nothing else runs) and
        totals (``train_time`` in seconds, excluding evaluation and the first
        step, ``first_step_time``, ``test_acc_final``, ``test_acc_tta``,
        ``epoch_to_90``, ...).
    """
    if log is None:
        log = lambda line: print(line, flush=True)  # noqa: E731
    precision = choose_precision(precision)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    x_train = np.asarray(x_train, dtype=np.uint8)
    y_train = np.asarray(y_train, dtype=np.int32).reshape(-1)
    n = len(x_train)
    steps_per_epoch = n // batch_size
    total_steps = int(math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    num_classes = int(y_train.max()) + 1

    kernel, _ = whitening_filters(x_train)
    model = build_fast_net(
        widths, whiten_kernel=kernel, num_classes=num_classes, precision=precision, seed=seed
    )

    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr_mean = lr * batch_size / kilostep_scale
    decay = weight_decay / lr
    optimizer = keras.optimizers.SGD(learning_rate=lr_mean, momentum=momentum, nesterov=True)
    variables = model.trainable_variables
    optimizer.build(variables)
    is_bias = [("_bn" in v.path and v.path.endswith("beta")) for v in variables]
    grad_scales = [bias_scaler if b else 1.0 for b in is_bias]
    # 1.0 while the whitening bias learns, then 0.0 (no gradient, no decay).
    whiten_gate = tf.Variable(1.0, trainable=False, dtype=tf.float32)
    gates = [whiten_gate if v.path == "whiten/bias" else None for v in variables]
    if not any(g is not None for g in gates):
        raise RuntimeError("the fast net has no whiten/bias variable")
    schedule = _triangle(total_steps, 0.2, warmup, 0.07)

    smoothing = float(label_smoothing)

    @tf.function(autograph=False)
    def train_step(images: Any, labels: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            logits = keras.ops.cast(logits, "float32")
            onehot = keras.ops.one_hot(labels, num_classes)
            target = onehot * (1.0 - smoothing) + smoothing / num_classes
            logp = keras.ops.log_softmax(logits, axis=-1)
            loss = -keras.ops.mean(keras.ops.sum(target * logp, axis=-1))
        grads = tape.gradient(loss, variables)
        grads = [g * s + decay * v for g, s, v in zip(grads, grad_scales, variables)]
        grads = [g if gate is None else g * gate for g, gate in zip(grads, gates)]
        optimizer.apply(grads, variables)
        correct = keras.ops.sum(
            keras.ops.cast(keras.ops.argmax(logits, axis=-1) == labels, "float32")
        )
        return loss, correct

    # Lookahead state: all weights (trainable and BatchNorm statistics)
    all_weights = model.weights
    slow = [tf.Variable(w.value, trainable=False) for w in all_weights]

    @tf.function(autograph=False)
    def lookahead_update(alpha: Any) -> None:
        for s, w in zip(slow, all_weights):
            s.assign(alpha * s + (1.0 - alpha) * w.value)
            w.assign(s)

    alpha_schedule = 0.95**5 * (np.arange(total_steps + 1) / total_steps) ** 3

    history: dict[str, Any] = {
        "epoch": [],
        "epoch_time": [],
        "images_per_s": [],
        "train_loss": [],
        "train_acc": [],
        "test_acc": [],
        "elapsed_train_time": [],
        "cpu_per_wall": [],
    }
    flip_mask = rng.random(n) < 0.5
    step = 0
    train_time = 0.0
    first_step_time = None
    epoch = 0
    has_test = x_test is not None and y_test is not None
    while step < total_steps:
        mask = flip_mask if epoch % 2 == 0 else ~flip_mask
        whiten_gate.assign(1.0 if epoch < whiten_bias_epochs else 0.0)
        t_epoch = time.perf_counter()
        cpu_epoch = time.process_time()
        augmented = augment_epoch(x_train, mask, rng, translate)
        order = rng.permutation(n)
        losses, correct, seen = 0.0, 0.0, 0
        for b in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb = tf.constant(augmented[idx])
            yb = tf.constant(y_train[idx])
            optimizer.learning_rate.assign(lr_mean * float(schedule[step]))
            t0 = time.perf_counter()
            loss, corr = train_step(xb, yb)
            step += 1
            if lookahead and step % 5 == 0:
                lookahead_update(tf.constant(float(alpha_schedule[step]), tf.float32))
            elif lookahead and step == total_steps:
                lookahead_update(tf.constant(1.0, tf.float32))  # end on the average
            losses += float(loss)
            correct += float(corr)
            seen += len(idx)
            if first_step_time is None:
                first_step_time = time.perf_counter() - t0
                t_epoch += first_step_time  # tracing is reported apart
        dt = time.perf_counter() - t_epoch
        cpu_used = time.process_time() - cpu_epoch
        train_time += dt
        epoch += 1
        history["epoch"].append(epoch)
        history["epoch_time"].append(dt)
        history["images_per_s"].append(seen / dt)
        history["train_loss"].append(losses / max(1, seen // batch_size))
        history["train_acc"].append(correct / max(1, seen))
        history["elapsed_train_time"].append(train_time)
        history["cpu_per_wall"].append(cpu_used / dt)
        acc = None
        if has_test and (eval_every_epoch or step >= total_steps):
            acc = evaluate_tta(model, x_test, y_test, tta_level=0)
        history["test_acc"].append(acc)
        if verbose:
            msg = (
                f"epoch {epoch:2d}  {dt:6.1f}s  {seen / dt:6.0f} img/s  "
                f"loss {history['train_loss'][-1]:.4f}  train_acc {history['train_acc'][-1]:.4f}  "
                f"cpu/wall {cpu_used / dt:.2f}"
            )
            if acc is not None:
                msg += f"  test_acc {acc:.4f}"
            log(msg)

    history.update(
        precision=precision,
        batch_size=batch_size,
        epochs=epochs,
        steps=step,
        train_time=train_time,
        first_step_time=first_step_time,
        images_per_s_mean=step * batch_size / train_time if train_time else None,
        params=int(model.count_params()),
    )
    if has_test:
        history["test_acc_final"] = evaluate_tta(model, x_test, y_test, tta_level=0)
        history["test_acc_tta"] = evaluate_tta(model, x_test, y_test, tta_level=1)
        if tta_level >= 2:
            history["test_acc_tta2"] = evaluate_tta(model, x_test, y_test, tta_level=2)
        reached = [e for e, a in zip(history["epoch"], history["test_acc"]) if a is not None and a >= 0.9]
        history["epoch_to_90"] = reached[0] if reached else None
        history["time_to_90"] = (
            history["elapsed_train_time"][reached[0] - 1] if reached else None
        )
    return model, history


def train_fast_on(
    data: Any,
    *,
    epochs: float = 10.0,
    batch_size: int = 512,
    seed: int = 0,
    verbose: int = 1,
    **kwargs: Any,
) -> tuple[keras.Model, Any]:
    """Run :func:`train_fast` on a :class:`~cifar_tutorial.data.CifarData` (chapter 8).

    This is what ``python -m cifar_tutorial train --model fast`` calls. The validation
    split, when there is one, is scored after every epoch. The returned model takes
    images scaled to ``[0, 1]``, like every other model of the package (a
    ``Rescaling(255)`` layer in front of the fast net), so that
    :func:`cifar_tutorial.evaluate.evaluate` and ``model.keras`` files work the same.

    Parameters
    ----------
    data : CifarData
        The data, as loaded by :func:`cifar_tutorial.data.load_cifar10`.
    epochs : float
        Passes over the training set.
    batch_size : int
        Images per step.
    seed : int
        Seed of the run.
    verbose : int
        0 silent, otherwise one line per epoch.
    **kwargs
        Passed to :func:`train_fast`.

    Returns
    -------
    model : keras.Model
        The trained net behind a ``Rescaling(255)`` input layer.
    history : cifar_tutorial.train.History
        One record per epoch (``val_accuracy`` on the validation split; the loss is
        the label-smoothed training loss).
    """
    from cifar_tutorial.train import History

    has_val = len(data.y_val) > 0
    net, raw = train_fast(
        data.x_train, data.y_train,
        data.x_val if has_val else None, data.y_val if has_val else None,
        epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose,
        eval_every_epoch=has_val, **kwargs,
    )
    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Rescaling(255.0, name="to_0_255"), net],
        name="fast_net",
    )
    records = []
    for i, epoch in enumerate(raw["epoch"]):
        val = raw["test_acc"][i]
        records.append({
            "epoch": epoch,
            "loss": float(raw["train_loss"][i]),
            "accuracy": float(raw["train_acc"][i]),
            "val_loss": float("nan"),
            "val_accuracy": float("nan") if val is None else float(val),
            "lr": float("nan"),
            "seconds": float(raw["epoch_time"][i]),
        })
    return model, History(records)
