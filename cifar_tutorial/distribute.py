"""Distribution strategies and the helpers of chapter 10 ("Scaling out with tf.distribute").

The trainers in :mod:`cifar_tutorial.train` take any ``tf.distribute.Strategy``.
This module

- builds the three strategies the command line offers (:func:`make_strategy`);
- scales a learning rate with the global batch size (:func:`scaled_learning_rate`);
- splits the CPU into logical devices, so that ``MirroredStrategy`` can be tried on
  a machine without GPUs (:func:`split_cpu`);
- tells the trainers of :mod:`cifar_tutorial.train` how a cluster is laid out: which
  process writes the outputs (:func:`is_chief`), whether replicas live in other
  processes (:func:`is_multi_worker`), how each worker takes its share of a batch
  (:func:`shard_by_data`), and whether all workers can resume from the same epoch
  (:func:`workers_disagreement`);
- writes the ``TF_CONFIG`` of a worker (:func:`tf_config`).

The tests start clusters of worker processes on one machine with
``tests/cluster.py``; chapter 10 shows the commands a reader runs instead.

The timed comparison of one device with several replicas lives with the other
experiments, in :mod:`cifar_tutorial.experiments`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import keras
import tensorflow as tf

__all__ = [
    "STRATEGIES",
    "REFERENCE_BATCH",
    "make_strategy",
    "scaled_learning_rate",
    "split_cpu",
    "weights_digest",
    "local_copy",
    "is_chief",
    "is_multi_worker",
    "shard_by_data",
    "workers_disagreement",
    "tf_config",
]

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")
"""Names accepted by :func:`make_strategy`."""

REFERENCE_BATCH = 32
"""The batch size the book's default learning rates were tuned at (``--scale-lr``)."""


def make_strategy(name: str = "default", devices: Sequence[str] | None = None):
    """Build a ``tf.distribute`` strategy by name.

    Create it before any other TensorFlow work: ``MultiWorkerMirroredStrategy``
    configures the runtime's collective operations, which TensorFlow refuses once
    tensors exist.

    Parameters
    ----------
    name : {"default", "mirrored", "multiworker"}
        ``"default"``: one device, no replication. ``"mirrored"``: one replica per
        local GPU (or per logical CPU device when there is no GPU, see
        :func:`split_cpu`), gradients summed with all-reduce. ``"multiworker"``:
        synchronous data parallelism across the processes described by the
        ``TF_CONFIG`` environment variable.
    devices : sequence of str, optional
        For ``"mirrored"``: the devices to use instead of all local ones.

    Returns
    -------
    tf.distribute.Strategy
        The strategy; build and compile models inside ``strategy.scope()``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(None if devices is None else list(devices))
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "the multiworker strategy needs TF_CONFIG describing the cluster, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as err:
            raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def scaled_learning_rate(base: float, global_batch: int, reference_batch: int) -> float:
    """Scale a learning rate linearly with the global batch size (Goyal et al., 2017).

    Parameters
    ----------
    base : float
        The learning rate tuned at ``reference_batch``.
    global_batch : int
        The batch size summed over all replicas.
    reference_batch : int
        The batch size ``base`` was tuned for.

    Returns
    -------
    float
        ``base * global_batch / reference_batch``.
    """
    if global_batch <= 0 or reference_batch <= 0:
        raise ValueError("batch sizes must be positive")
    return base * global_batch / reference_batch


def split_cpu(replicas: int = 2) -> list[str]:
    """Split the CPU into ``replicas`` logical devices (chapter 10).

    ``MirroredStrategy`` then runs one replica on each, which shows on a machine
    without GPUs that several replicas compute what one device computes. The
    devices share the same cores, so this is a simulation: it gives no speed-up.

    Call it before any other TensorFlow work (seeding is fine): TensorFlow fixes
    its devices the first time it uses them. Calling it again with the same
    number is harmless.

    Parameters
    ----------
    replicas : int
        Number of logical CPU devices.

    Returns
    -------
    list of str
        The names of the logical CPU devices.

    Raises
    ------
    RuntimeError
        If TensorFlow has set up its devices already with another number.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if len(current or [None]) != replicas:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
            )
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            raise RuntimeError(
                f"TensorFlow has set up its devices already ({have} CPU device(s)); call "
                "split_cpu before any other TensorFlow work (in a notebook: restart the "
                "kernel and run it first)"
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def weights_digest(model) -> str:
    """A short fingerprint of a model's weights: equal digests mean equal bits.

    The command line prints it on every worker, so that one can check that all
    replicas ended with the same weights.

    Parameters
    ----------
    model : keras.Model
        Any model.

    Returns
    -------
    str
        The first 12 hexadecimal digits of the SHA-256 of all weights.
    """
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- trainers


def is_chief(strategy=None) -> bool:
    """Tell whether this process writes outputs: always, except on non-chief workers.

    With ``MultiWorkerMirroredStrategy`` every worker trains, but only the chief
    (the ``chief`` task, or worker 0 where there is none) writes files (chapter 10).

    Parameters
    ----------
    strategy : tf.distribute.Strategy, optional
        The strategy training runs under; ``None`` means one process.

    Returns
    -------
    bool
        True unless the strategy's cluster names another task as the chief.
    """
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


def is_multi_worker(strategy) -> bool:
    """Tell whether ``strategy`` has replicas in other processes (chapter 10)."""
    replicas = strategy.num_replicas_in_sync
    return replicas > 1 and replicas > len(strategy.extended.worker_devices)


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Let each worker of a cluster take its share of every batch (chapter 10).

    The pipelines read arrays, not files, so the automatic choice (shard by file)
    cannot apply; say so instead of letting TensorFlow warn and fall back.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def workers_disagreement(strategy, epochs_done: int) -> str | None:
    """Say why the workers cannot resume together, or ``None`` when they can (chapter 10).

    Workers that would resume from different epochs would wait for each other
    forever, so the trainers refuse to start. Every worker contributes ``n`` and
    ``n**2``; the means agree with the local ``n`` only when all ``n`` are equal
    (their variance is then zero). Every worker must call this at the same point.

    Parameters
    ----------
    strategy : tf.distribute.Strategy
        A multi-worker strategy.
    epochs_done : int
        The epochs this worker's checkpoint holds.

    Returns
    -------
    str or None
        The problem and how to fix it, or ``None``.
    """
    local = tf.constant([float(epochs_done), float(epochs_done) ** 2])

    @tf.function
    def mean_over_workers():
        values = strategy.run(lambda: tf.identity(local))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None)

    mean = mean_over_workers().numpy()
    if abs(mean[1] - mean[0] ** 2) <= 1e-3 and abs(mean[0] - epochs_done) <= 1e-3:
        return None
    here = f"after epoch {epochs_done}" if epochs_done else "from the start"
    return (
        f"the workers would resume from different epochs (this one {here}): give all "
        "workers the same output folder on a shared file system, so that they resume "
        "from the chief's checkpoint, or start afresh with --no-resume"
    )


# --------------------------------------------------------------------------- clusters


def tf_config(workers: Sequence[str], index: int) -> str:
    """The ``TF_CONFIG`` value for worker ``index`` of a cluster (chapter 10).

    Every worker gets the same list of addresses and its own index; worker 0 is
    the chief, which writes the outputs.

    Parameters
    ----------
    workers : sequence of str
        ``host:port`` of every worker, in the same order on all of them.
    index : int
        This worker's position in ``workers``.

    Returns
    -------
    str
        JSON, e.g. ``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 0}}``.
    """
    if not 0 <= index < len(workers):
        raise ValueError(f"index {index} is not a position in a list of {len(workers)} workers")
    return json.dumps(
        {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}}
    )


def local_copy(model):
    """A copy of ``model`` whose variables live on this process only (chapter 10).

    Keras' ``predict`` and ``evaluate`` are not usable on a model built under
    ``MultiWorkerMirroredStrategy`` (they would wait for the other workers); the
    chief evaluates this copy instead. Call it outside ``strategy.scope()``.

    Parameters
    ----------
    model : keras.Model
        A trained model.

    Returns
    -------
    keras.Model
        An uncompiled copy with the same weights.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
