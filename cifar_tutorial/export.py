"""Shipping a trained model: SavedModel and TensorFlow Lite, float and int8 (chapter 11).

Chapter 11 ("Can we trust the classifier?") exports the book's models with Keras'
``model.export()`` to a TensorFlow SavedModel (what TensorFlow Serving loads), turns
that into TensorFlow Lite files with ``tf.lite.TFLiteConverter`` (what phones and
small boards run), once in float32 and once with int8 post-training quantization
calibrated on training images, and checks that every exported model predicts what
the Keras model predicts, how large its file is and how long one image takes on
the CPU.

The TensorFlow Lite interpreter comes from the ``ai_edge_litert`` package (LiteRT)
when it is installed; otherwise from ``tf.lite.Interpreter``, which TensorFlow 2.21
still ships but marks as deprecated (its warning is silenced here). The converter
and the interpreter print C++ log lines on the process's standard error; they are
kept out of the notebooks.

Every runner here is a callable from float32 images ``(n, 32, 32, 3)`` in ``[0, 1]``
to the model's outputs ``(n, classes)``; :func:`predict` feeds it uint8 images in
batches.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cifar_tutorial.data import to_unit_float
from cifar_tutorial.fastnet import gelu_compiled

__all__ = [
    "QUANTIZATIONS",
    "Runner",
    "export_saved_model",
    "SavedModelRunner",
    "float32_copy",
    "convert_to_tflite",
    "TFLiteRunner",
    "keras_runner",
    "predict",
    "size_bytes",
    "latency_ms",
]

QUANTIZATIONS: tuple[str, ...] = ("float32", "int8")
"""TensorFlow Lite variants, float32 weights and arithmetic or int8 weights and
activations (post-training quantization) with a float32 input and output."""

Runner = Callable[[np.ndarray], np.ndarray]
"""A model as a function from float32 images in ``[0, 1]`` to its outputs."""


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send the process's standard error (file descriptor 2) to the null device for a while.

    TensorFlow Lite's converter and interpreter log from C++ ("Created TensorFlow
    Lite XNNPACK delegate for CPU", the quantizer's settings), past Python's
    ``sys.stderr``. Errors still arrive as Python exceptions.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to redirect
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def export_saved_model(model: keras.Model, directory: str | os.PathLike) -> Path:
    """Write ``model`` as a TensorFlow SavedModel with ``model.export()`` (chapter 11).

    The SavedModel holds the inference graph only (no optimizer, no training
    behaviour), with one ``serve`` endpoint.

    Parameters
    ----------
    model : keras.Model
        A trained model.
    directory : path
        The folder to create (replaced if it exists).

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    directory = Path(directory)
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # no "Assets written to <folder>" notice
    try:
        with _quiet_stderr():
            model.export(str(directory), format="tf_saved_model", verbose=False)
    finally:
        logger.setLevel(level)
    return directory


class SavedModelRunner:
    """Run a SavedModel written by :func:`export_saved_model` (chapter 11).

    Parameters
    ----------
    directory : path
        The SavedModel folder.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._loaded = tf.saved_model.load(str(self.directory))
        if not hasattr(self._loaded, "serve"):
            raise ValueError(f"{self.directory.name} has no 'serve' endpoint: "
                             "write it with export_saved_model (model.export)")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Outputs for float32 images in ``[0, 1]``."""
        return np.asarray(self._loaded.serve(tf.constant(images, dtype=tf.float32)))


def _float32_config(config: Any) -> Any:
    """``config`` with every layer's dtype policy replaced by plain float32."""
    if isinstance(config, dict):
        return {k: "float32" if k == "dtype" and _is_policy(v) else _float32_config(v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def _is_policy(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy")


def float32_copy(model: keras.Model) -> keras.Model:
    """The same model computing in float32 throughout (chapter 11).

    The fast recipe trains under ``mixed_bfloat16`` where the CPU supports it
    (chapter 9): its weights are float32, but most layers compute in bfloat16,
    which TensorFlow Lite's converter does not accept. The copy is rebuilt from
    the model's configuration with float32 layers and given the same weights; a
    float32 model comes back as an equal copy. GELUs compiled by XLA
    (:func:`cifar_tutorial.fastnet.gelu_compiled`), which the converter cannot read
    either, become Keras' own GELU, the same function.

    Parameters
    ----------
    model : keras.Model
        A model built from configurable layers (every model of the book).

    Returns
    -------
    keras.Model
        A new model with the same weights.
    """
    copy = model.__class__.from_config(_float32_config(model.get_config()))
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if getattr(layer, "activation", None) is gelu_compiled:
            layer.activation = keras.activations.gelu  # the same function, without XLA
    return copy


def convert_to_tflite(
    model: keras.Model | str | os.PathLike,
    path: str | os.PathLike,
    quantization: str = "float32",
    calibration_images: np.ndarray | None = None,
) -> Path:
    """Convert a Keras model, or a SavedModel, to a TensorFlow Lite file (chapter 11).

    A Keras model is first made float32 (:func:`float32_copy`) and written as a
    SavedModel in a temporary folder with ``model.export()``; the converter reads
    the SavedModel in either case.

    ``"int8"`` is full-integer post-training quantization: the converter runs the
    float model on ``calibration_images`` (training images, never test ones) to
    find the range of every activation, then stores weights and activations as
    8-bit integers with one scale per range; only the input and output stay
    float32.

    Parameters
    ----------
    model : keras.Model or path
        The trained model, or a folder written by :func:`export_saved_model` from
        a float32 model.
    path : path
        The ``.tflite`` file to write.
    quantization : {"float32", "int8"}
        See :data:`QUANTIZATIONS`.
    calibration_images : numpy.ndarray, optional
        ``(n, 32, 32, 3)`` uint8 training images; needed for ``"int8"`` (a few
        hundred are enough).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For an unknown quantization, ``"int8"`` without calibration images, or a
        SavedModel the converter refuses (one that computes in bfloat16).
    """
    if isinstance(model, keras.Model):
        with tempfile.TemporaryDirectory() as folder:
            saved = export_saved_model(float32_copy(model), Path(folder) / "saved_model")
            return convert_to_tflite(saved, path, quantization, calibration_images)
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(model))
    if quantization == "int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("int8 quantization needs calibration_images: pass a few hundred "
                             "training images (uint8)")
        unit = to_unit_float(np.asarray(calibration_images))

        def representative() -> Iterator[list[np.ndarray]]:
            for image in unit:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        with _quiet_stderr():
            content = converter.convert()
    except Exception as error:  # the converter raises its own ConverterError
        raise ValueError(f"TensorFlow Lite cannot convert {Path(model).name}: "
                         f"{str(error).splitlines()[0][:200]}; pass the Keras model "
                         "instead (it is converted to float32 first)") from None
    path = Path(path)
    path.write_bytes(content)
    return path


def _interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteRunner:
    """Run a TensorFlow Lite file on the CPU (chapter 11).

    Parameters
    ----------
    path : path
        A file written by :func:`convert_to_tflite`.
    num_threads : int, optional
        Threads of the interpreter; by default its own choice.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        self.path = Path(path)
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            self._interpreter = _interpreter_class()(model_path=str(self.path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 1

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Outputs for float32 images in ``[0, 1]``."""
        x = np.ascontiguousarray(images, dtype=np.float32)
        if len(x) != self._batch:
            self._interpreter.resize_tensor_input(self._input, list(x.shape))
            with _quiet_stderr():
                self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output), dtype=np.float64)


def keras_runner(model: keras.Model) -> Runner:
    """The Keras model itself as a runner: one direct call, ``model(x, training=False)`` (chapter 11).

    ``model.predict`` is built for many batches; for a single image its set-up
    costs more than the network, so latencies are measured on this call instead.

    Parameters
    ----------
    model : keras.Model
        The model.

    Returns
    -------
    Runner
        A function from float32 images to the model's outputs.
    """
    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(model(tf.constant(images, dtype=tf.float32), training=False), dtype=np.float64)

    return run


def predict(runner: Runner, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """The outputs of ``runner`` for uint8 (scaled by 1/255) or ``[0, 1]`` float images (chapter 11).

    Parameters
    ----------
    runner : Runner
        A :class:`SavedModelRunner`, :class:`TFLiteRunner` or :func:`keras_runner`.
    images : numpy.ndarray
        ``(n, 32, 32, 3)`` images.
    batch_size : int
        Images per call.

    Returns
    -------
    numpy.ndarray
        ``(n, classes)`` float64 outputs.
    """
    x = to_unit_float(np.asarray(images))
    return np.concatenate([runner(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def size_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or of every file under a folder (a SavedModel), in bytes (chapter 11).

    Parameters
    ----------
    path : path
        A file or a folder.

    Returns
    -------
    int
        The total size.
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def latency_ms(runner: Runner, image: np.ndarray, repeats: int = 50, warmup: int = 5) -> float:
    """Median time of one call of ``runner`` on a single image, in milliseconds (chapter 11).

    Parameters
    ----------
    runner : Runner
        The model to time.
    image : numpy.ndarray
        One ``(32, 32, 3)`` image, uint8 or ``[0, 1]`` float.
    repeats : int
        Timed calls; the median is robust to the odd slow one.
    warmup : int
        Untimed calls first (graph tracing, memory allocation).

    Returns
    -------
    float
        Milliseconds.
    """
    x = to_unit_float(np.asarray(image))[None]
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
