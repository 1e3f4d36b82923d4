"""Training and validation steps written out with ``tf.GradientTape`` (chapter 7).

Chapter 7 ("A custom training loop") writes the step that Keras' ``fit`` hides:
forward pass, loss, gradients, optimizer update. :func:`make_train_step` is that
step with the care distribution needs (chapter 9): the loss is averaged over the
*global* batch and the results are summed over the replicas.
:func:`cifar_tutorial.train.train` runs it with ``loop="custom"``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

__all__ = ["label_mode_of", "make_train_step", "make_eval_step"]


def label_mode_of(model: keras.Model) -> str:
    """Return ``"sparse"`` or ``"onehot"``: the labels the compiled loss expects.

    Raises
    ------
    ValueError
        If the model is not compiled.
    """
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
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = model.loss
    sparse = label_mode_of(model) == "sparse"

    def replica_step(x, y):
        pred = model(x, training=False)
        count = tf.cast(tf.shape(x)[0], tf.float32)
        return _batch_sums(y, pred, loss_fn.call(y, pred), count, sparse)

    return _summed_over_replicas(replica_step, strategy)


def _batch_sums(y, pred, per_example, count, sparse: bool) -> tuple:
    truth = y if sparse else tf.argmax(y, axis=-1)
    hits = tf.equal(tf.argmax(pred, axis=-1, output_type=tf.int32), tf.cast(truth, tf.int32))
    return tf.reduce_sum(per_example), tf.reduce_sum(tf.cast(hits, tf.float32)), count


def _summed_over_replicas(
    replica_step: Callable, strategy, pass_global_count: bool = False
) -> Callable:
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
