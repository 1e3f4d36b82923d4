"""Distribution strategies by name (chapter 8, "Scaling out").

The trainers in :mod:`cifar_tutorial.train` take any ``tf.distribute.Strategy``;
this module builds the three the command line offers.
"""

from __future__ import annotations

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")
"""Names accepted by :func:`make_strategy`."""


def make_strategy(name: str = "default"):
    """Build a ``tf.distribute`` strategy by name.

    Parameters
    ----------
    name : {"default", "mirrored", "multiworker"}
        ``"default"``: one device, no replication. ``"mirrored"``: one replica per
        local GPU (or the CPU when there is none), gradients summed with
        all-reduce. ``"multiworker"``: synchronous data parallelism across the
        processes described by the ``TF_CONFIG`` environment variable.

    Returns
    -------
    tf.distribute.Strategy
        The strategy; build and compile models inside ``strategy.scope()``.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        import json
        import os

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
