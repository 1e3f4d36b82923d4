"""Evaluation: accuracy, per-class accuracy, confusion matrix, worst mistakes.

Chapter 7 ("The seed's CNN") evaluates the trained net once on the test set with
:func:`evaluate`; chapter 9 adds test-time augmentation (``tta="flip"`` or
``"flip_shift"``), which the command line, the fast recipe and the benchmarks use
through :func:`predict_logits`: one definition, averaging logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from cifar_tutorial.data import CifarData, to_unit_float
from cifar_tutorial.maths import softmax
from cifar_tutorial.models import outputs_logits

__all__ = [
    "Evaluation",
    "confusion_matrix",
    "TTA_LEVELS",
    "tta_views",
    "predict_logits",
    "predict_probabilities",
    "evaluate",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """What a model got right and wrong on one split.

    Attributes
    ----------
    y_true, y_pred : numpy.ndarray
        True and predicted labels.
    probabilities : numpy.ndarray
        Predicted class probabilities, shape ``(n, classes)``.
    class_names : tuple of str
        Names in label order.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    probabilities: np.ndarray
    class_names: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        """Share of correct predictions."""
        return float(np.mean(self.y_true == self.y_pred))

    @property
    def loss(self) -> float:
        """Mean cross-entropy of the true class (probabilities clipped at 1e-7)."""
        picked = self.probabilities[np.arange(len(self.y_true)), self.y_true]
        return float(np.mean(-np.log(np.clip(picked, 1e-7, 1.0))))

    @property
    def confusion(self) -> np.ndarray:
        """The confusion matrix, one row per true class and one column per predicted class."""
        k = len(self.class_names)
        return confusion_matrix(self.y_true, self.y_pred, k)

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        """Accuracy within each true class (recall), by class name."""
        cm = self.confusion
        totals = cm.sum(axis=1)
        return {
            name: float(cm[i, i] / totals[i]) if totals[i] else float("nan")
            for i, name in enumerate(self.class_names)
        }

    def worst_mistakes(self, k: int = 16) -> np.ndarray:
        """Indices of the ``k`` wrong predictions made with the highest confidence.

        Parameters
        ----------
        k : int
            How many.

        Returns
        -------
        numpy.ndarray
            Indices into the evaluated split, most confident first.
        """
        wrong = np.flatnonzero(self.y_true != self.y_pred)
        confidence = self.probabilities[wrong, self.y_pred[wrong]]
        return wrong[np.argsort(-confidence, kind="stable")][:k]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``metrics.json`` holds)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "num_examples": int(len(self.y_true)),
            "per_class_accuracy": self.per_class_accuracy,
            "confusion_matrix": self.confusion.tolist(),
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count each (true, predicted) pair.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray
        Integer labels of equal length.
    num_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``(num_classes, num_classes)`` int64 counts, rows true, columns predicted.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


TTA_LEVELS: tuple[str, ...] = ("none", "flip", "flip_shift")
"""Levels of test-time augmentation (chapter 9), from the image alone, to the image and
its mirror image, to these two for the image and for copies shifted by one pixel."""


def tta_views(images: np.ndarray, tta: str = "none") -> Iterator[tuple[float, np.ndarray]]:
    """The copies of ``images`` that test-time augmentation averages, with their weights.

    ``"flip"`` adds the mirror images (left-right), each pair weighted 1/2.
    ``"flip_shift"`` weights that pair 1/2 in all and adds, with weight 1/4 each, the
    same pair for copies shifted by one pixel down-right and up-left (reflect
    padding), as airbench does (chapter 9).

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, height, width, channels)`` images, any dtype.
    tta : {"none", "flip", "flip_shift"}
        The level, see :data:`TTA_LEVELS`.

    Yields
    ------
    (float, numpy.ndarray)
        A weight and a transformed copy; the weights sum to one.
    """
    if tta not in TTA_LEVELS:
        raise ValueError(f"tta must be one of {', '.join(TTA_LEVELS)}; got {tta!r}")
    if tta == "none":
        yield 1.0, images
        return
    originals = [(0.5 if tta == "flip" else 0.25, images)]
    if tta == "flip_shift":
        _, h, w, _ = images.shape
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        originals += [(0.125, padded[:, :h, :w]), (0.125, padded[:, 2:, 2:])]
    for weight, x in originals:
        yield weight, np.ascontiguousarray(x)
        yield weight, np.ascontiguousarray(x[:, :, ::-1])


def predict_logits(
    model: keras.Model, images: np.ndarray, *, tta: str = "none", batch_size: int = 500
) -> np.ndarray:
    """Class scores (logits) for uint8 or [0, 1] float images, with test-time augmentation.

    Test-time augmentation averages the *logits* of the copies that
    :func:`tta_views` makes, the same at every level and for every model (chapter 9).
    For a model that ends in a probability head the logits are the log-probabilities
    (they differ from the scores before the head by a constant per image, which
    changes neither the softmax nor the predicted class); a head that is not a
    distribution (the L2 head of chapter 3) is first made one, as in
    :func:`predict_probabilities`, and a class it gives zero gets ``-inf``.

    Parameters
    ----------
    model : keras.Model
        A trained model that takes images in ``[0, 1]``.
    images : numpy.ndarray
        ``(n, 32, 32, 3)`` uint8 (scaled here) or float in ``[0, 1]``.
    tta : {"none", "flip", "flip_shift"}
        The level of test-time augmentation, see :data:`TTA_LEVELS`.
    batch_size : int
        Prediction batch size.

    Returns
    -------
    numpy.ndarray
        ``(n, classes)`` float64 logits, averaged over the copies.
    """
    x = to_unit_float(images)
    total = None
    for weight, view in tta_views(x, tta):
        out = _predict(model, view, batch_size)
        if not outputs_logits(model):
            with np.errstate(divide="ignore"):
                out = np.log(_as_distribution(out))
        total = weight * out if total is None else total + weight * out
    return total


def _predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def _as_distribution(out: np.ndarray) -> np.ndarray:
    out = np.clip(out, 0.0, None)
    total = out.sum(axis=-1, keepdims=True)
    empty = total <= 0
    return np.where(empty, 1.0 / out.shape[-1], out / np.where(empty, 1.0, total))


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int = 500, tta: str = "none"
) -> np.ndarray:
    """Class probabilities for uint8 or [0, 1] float images.

    Logit models get a softmax; models whose head is not a distribution (the L2
    head of chapter 3) have negative outputs set to zero and are rescaled to sum
    to one, as Keras' loss does. An image whose outputs are all zero or below gets
    the uniform distribution (each class 1/10), so every row sums to one. With
    test-time augmentation, the softmax of the averaged logits of
    :func:`predict_logits` (uniform, too, where they are all ``-inf``).

    Parameters
    ----------
    model : keras.Model
        A trained model.
    images : numpy.ndarray
        ``(n, 32, 32, 3)`` uint8 (scaled here) or float in ``[0, 1]``.
    batch_size : int
        Prediction batch size.
    tta : {"none", "flip", "flip_shift"}
        Test-time augmentation (chapter 9), see :data:`TTA_LEVELS`.

    Returns
    -------
    numpy.ndarray
        ``(n, classes)`` probabilities.
    """
    if tta != "none":
        logits = predict_logits(model, images, tta=tta, batch_size=batch_size)
        # Copies whose heads gave every class zero somewhere leave all logits -inf.
        empty = np.all(np.isneginf(logits), axis=-1, keepdims=True)
        return np.where(empty, 1.0 / logits.shape[-1], softmax(np.where(empty, 0.0, logits)))
    out = _predict(model, to_unit_float(images), batch_size)
    return softmax(out) if outputs_logits(model) else _as_distribution(out)


def evaluate(
    model: keras.Model, data: CifarData, split: str = "test", batch_size: int = 500, tta: str = "none"
) -> Evaluation:
    """Evaluate ``model`` on one split of ``data`` (chapter 7).

    Parameters
    ----------
    model : keras.Model
        A trained model.
    data : CifarData
        The data.
    split : {"test", "val", "train"}
        Which split; the test split should be used once, at the end.
    batch_size : int
        Prediction batch size.
    tta : {"none", "flip", "flip_shift"}
        Test-time augmentation: average the logits over the image and its mirror
        image (``"flip"``), and over shifted copies too (``"flip_shift"``); see
        :func:`predict_logits`.

    Returns
    -------
    Evaluation
        Predictions and the metrics derived from them.
    """
    x, y = data.arrays(split)
    probs = predict_probabilities(model, x, batch_size=batch_size, tta=tta)
    return Evaluation(
        y_true=np.asarray(y, dtype=np.int64),
        y_pred=probs.argmax(axis=-1),
        probabilities=probs,
        class_names=tuple(data.class_names),
    )
