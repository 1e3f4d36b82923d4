"""Evaluation: accuracy, per-class accuracy, confusion matrix, worst mistakes.

Chapter 6 ("The seed's CNN") evaluates the trained net once on the test set with
:func:`evaluate`; chapter 8 adds test-time flip augmentation (``tta=True``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from cifar_tutorial.data import CifarData
from cifar_tutorial.maths import softmax
from cifar_tutorial.models import outputs_logits


@dataclasses.dataclass(frozen=True)
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
        """Confusion matrix: row = true class, column = predicted class."""
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


def predict_probabilities(
    model: keras.Model, images: np.ndarray, batch_size: int = 500, tta: bool = False
) -> np.ndarray:
    """Class probabilities for uint8 or [0, 1] float images.

    Logit models get a softmax; models whose head is not a distribution (the L2
    head of chapter 3) have negative outputs set to zero and are rescaled to sum
    to one, as Keras' loss does. An image whose outputs are all zero or below gets
    the uniform distribution (each class 1/10), so every row sums to one.

    Parameters
    ----------
    model : keras.Model
        A trained model.
    images : numpy.ndarray
        ``(n, 32, 32, 3)`` uint8 (scaled here) or float in ``[0, 1]``.
    batch_size : int
        Prediction batch size.
    tta : bool
        Test-time augmentation: average the predictions for the image and its
        mirror image (chapter 8).

    Returns
    -------
    numpy.ndarray
        ``(n, classes)`` probabilities.
    """
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)

    def run(batch: np.ndarray) -> np.ndarray:
        out = np.asarray(model.predict(batch, batch_size=batch_size, verbose=0), dtype=np.float64)
        if outputs_logits(model):
            return softmax(out)
        out = np.clip(out, 0.0, None)
        total = out.sum(axis=-1, keepdims=True)
        empty = total <= 0
        return np.where(empty, 1.0 / out.shape[-1], out / np.where(empty, 1.0, total))

    probs = run(x)
    if tta:
        probs = (probs + run(x[:, :, ::-1, :])) / 2
    return probs


def evaluate(
    model: keras.Model, data: CifarData, split: str = "test", batch_size: int = 500, tta: bool = False
) -> Evaluation:
    """Evaluate ``model`` on one split of ``data`` (chapter 6).

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
    tta : bool
        Average over the image and its mirror image.

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
