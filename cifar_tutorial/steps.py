"""Training and validation steps written out with ``tf.GradientTape`` (chapter 8).

Chapter 8 ("A custom training loop") writes the step that Keras' ``fit`` hides:
forward pass, loss, gradients, optimizer update, metrics. :func:`make_train_step`
is that step as the ``tf.distribute`` guides write it (chapter 10): the loss object
gives one value per example (``reduction=None``), ``tf.nn.compute_average_loss``
averages them over the *global* batch, and the epoch's metrics are Keras metrics
updated inside the compiled step. :func:`cifar_tutorial.train.train` runs it with
``loop="custom"``.

The loss takes the labels in the format of the compiled loss (:func:`label_mode_of`);
the accuracy reads either, a batch of integers (rank 1) or of one-hot rows (rank 2).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from cifar_tutorial.errors import UsageError

__all__ = ["label_mode_of", "per_example_loss", "epoch_metrics", "make_train_step",
           "make_eval_step"]

ONE_HOT_LOSSES = (keras.losses.CategoricalCrossentropy, keras.losses.CategoricalFocalCrossentropy)
"""Keras losses that take one-hot rows; every other loss gets integer labels."""


def _compiled_loss(model: keras.Model) -> keras.losses.Loss | Callable:
    """The loss ``model`` was compiled with, as an object or a function."""
    if model.loss is None:
        raise UsageError("the model is not compiled: call compile_model first")
    return keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss


def label_mode_of(model: keras.Model) -> str:
    """Return ``"sparse"`` or ``"onehot"``: the labels the compiled loss takes (chapter 7).

    One-hot rows for the categorical losses (:data:`ONE_HOT_LOSSES`, also given by
    name, e.g. ``loss="categorical_crossentropy"``), integer labels otherwise,
    e.g. for ``loss="sparse_categorical_crossentropy"``.

    Raises
    ------
    UsageError
        If the model is not compiled.
    """
    loss = _compiled_loss(model)
    functions = (keras.losses.categorical_crossentropy, keras.losses.categorical_focal_crossentropy)
    return "onehot" if isinstance(loss, ONE_HOT_LOSSES) or loss in functions else "sparse"


def per_example_loss(model: keras.Model) -> Callable:
    """The compiled loss, giving one value per example: ``loss(y, pred)`` (chapter 8).

    A loss object is rebuilt from its config with ``reduction=None``; a loss given
    by name or as a function (``"sparse_categorical_crossentropy"``) already returns
    one value per example.
    """
    loss = _compiled_loss(model)
    if isinstance(loss, keras.losses.Loss):
        return type(loss).from_config({**loss.get_config(), "reduction": None})
    return loss


def epoch_metrics(prefix: str = "") -> list[keras.metrics.Metric]:
    """The metrics of an epoch, named as ``fit`` logs them: the mean loss and the accuracy.

    Build them under the strategy's scope; reset them at the start of each epoch.
    """
    return [keras.metrics.Mean(name=f"{prefix}loss"),
            keras.metrics.SparseCategoricalAccuracy(name=f"{prefix}accuracy")]


def _update(metrics: list[keras.metrics.Metric], y, pred, mean_loss, count) -> None:
    """Update the loss and accuracy as ``fit`` does: batch means weighted by batch size."""
    loss_metric, accuracy = metrics
    loss_metric.update_state(mean_loss, sample_weight=count)
    labels = y if y.shape.rank == 1 else tf.argmax(y, axis=-1)  # integers or one-hot rows
    accuracy.update_state(labels, pred)


# --------------------------------------------------------------------------- custom loop


def make_train_step(model: keras.Model, metrics: list[keras.metrics.Metric],
                    strategy=None) -> Callable:
    """Build one training step written out with ``tf.GradientTape`` (chapter 8).

    Per replica, the step computes the per-example losses, averages them over the
    *global* batch with ``tf.nn.compute_average_loss`` (so that summing the
    replicas' gradients gives the gradient of the mean), adds the layers'
    penalties, differentiates, lets the optimizer apply the gradients, and updates
    ``metrics``. The global batch is counted across the replicas before each step,
    so that the last, smaller batch is averaged right even when the replicas get
    unequal shares of it.

    Parameters
    ----------
    model : keras.Model
        A compiled model (its loss and optimizer are used).
    metrics : list of keras.metrics.Metric
        From :func:`epoch_metrics`, built under the strategy's scope.
    strategy : tf.distribute.Strategy, optional
        Where to run; the default strategy when omitted.

    Returns
    -------
    callable
        ``step(batch)``, a ``tf.function`` taking an ``(images, labels)`` batch
        (distributed when a strategy is given) and returning the mean loss.
    """
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = per_example_loss(model)
    optimizer = model.optimizer
    if not optimizer.built:
        # Built here, under the strategy, not lazily inside the first replicated step:
        # MirroredStrategy fails on optimizer variables created there.
        with strategy.scope():
            optimizer.build(model.trainable_variables)

    def replica_step(x, y, global_count):
        count = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = loss_fn(y, pred)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_count)
            penalty = tf.add_n(model.losses) if model.losses else 0.0
            loss += tf.nn.scale_regularization_loss(penalty)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        mean = keras.ops.sum(per_example) / keras.ops.cast(count, per_example.dtype)
        _update(metrics, y, pred, mean + penalty, count)
        return loss

    @tf.function
    def step(batch):
        counts = strategy.run(lambda x, _: tf.shape(x)[0], args=tuple(batch))
        global_count = strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)
        losses = strategy.run(replica_step, args=(*batch, global_count))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step


def make_eval_step(model: keras.Model, metrics: list[keras.metrics.Metric],
                   strategy=None) -> Callable:
    """Build the custom loop's validation step, the counterpart of :func:`make_train_step`.

    Returns
    -------
    callable
        ``step(batch)``, a ``tf.function`` that updates ``metrics`` (from
        ``epoch_metrics("val_")``) with the model's predictions in inference mode.
    """
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = per_example_loss(model)

    def replica_step(x, y):
        pred = model(x, training=False)
        per_example = loss_fn(y, pred)
        count = tf.shape(x)[0]
        penalty = tf.add_n(model.losses) if model.losses else 0.0
        mean = keras.ops.sum(per_example) / keras.ops.cast(count, per_example.dtype)
        _update(metrics, y, pred, mean + penalty, count)

    @tf.function
    def step(batch):
        strategy.run(replica_step, args=tuple(batch))

    return step
