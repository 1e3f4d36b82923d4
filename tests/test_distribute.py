"""Distribution strategies and clusters (chapter 10): cifar_tutorial.distribute.

- the CPU split into two logical devices gives ``MirroredStrategy`` two replicas (a
  subprocess, because the CPU must be split before TensorFlow sets up its devices);
  that they compute what one device computes is tested with
  :func:`cifar_tutorial.experiments.compare_with_one_device`, in ``test_experiments.py``;
- two ``MultiWorkerMirroredStrategy`` workers on 127.0.0.1 (``tests/cluster.py``),
  started through the command line, finish with equal weights, and only the chief
  writes files.

No real CIFAR-10 is needed: the data is synthetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tensorflow as tf

from cifar_tutorial import distribute, models, runtime
from tests import cluster
from tests.fixtures import make_image_folder

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 240  # generous: the 2 cores are shared with other jobs

SPLIT_SCRIPT = """
import json
from cifar_tutorial import distribute

out = {"devices": distribute.split_cpu(2)}  # before anything touches TensorFlow's devices
try:
    distribute.split_cpu(3)
except RuntimeError as err:
    out["late_split"] = str(err)
out["same_split_again"] = distribute.split_cpu(2)
strategy = distribute.make_strategy("mirrored")
out["replicas"] = strategy.num_replicas_in_sync
out["multi_worker"] = distribute.is_multi_worker(strategy)
print("RESULT " + json.dumps(out))
"""


def test_split_cpu_gives_logical_devices_and_refuses_late_changes() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert len(out["devices"]) == 2 and all("CPU" in d for d in out["devices"])
    assert "call split_cpu before any other TensorFlow work" in out["late_split"]
    assert out["same_split_again"] == out["devices"]
    assert out["replicas"] == 2 and out["multi_worker"] is False


@pytest.mark.slow
def test_two_workers_through_the_command_line(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "cifar", per_class_train=8, per_class_test=2,
                               fmt="png")
    outs = [tmp_path / "out-chief", tmp_path / "out-worker"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    commands = [
        [sys.executable, "-m", "cifar_tutorial", "train", "--strategy", "multiworker",
         "--data-dir", str(folder), "--out", str(out), "--epochs", "1",
         "--batch-size", "16", "--lr", "0.01"]
        for out in outs
    ]
    results = cluster.run_local_workers(
        commands, timeout=SUBPROCESS_TIMEOUT_S,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(scratch), "MPLBACKEND": "Agg"},
    )
    logs = "\n".join(f"--- worker {r.index}\n{r.output[-3000:]}" for r in results)
    summary = cluster.worker_summary(results)
    assert not any(r.timed_out for r in results), logs
    assert summary["returncodes"] == [0, 0], logs
    # Both trained with 2 replicas and ended with bit-identical weights.
    assert all("2 replicas;" in r.output for r in results), logs
    assert summary["digests"][0] is not None and summary["digests"][0] == summary["digests"][1]
    # The chief wrote everything; the other worker wrote nothing, not even scratch files.
    for name in ("model.keras", "metrics.json", "history.json", "checkpoint/state.json"):
        assert (outs[0] / name).is_file(), name
    assert json.loads((outs[0] / "metrics.json").read_text())["replicas"] == 2
    assert [p for p in outs[1].rglob("*") if p.is_file()] == []
    assert list(scratch.iterdir()) == []


def test_tf_config_and_ports() -> None:
    ports = cluster.free_ports(3)
    assert len(set(ports)) == 3 and all(0 < p < 65536 for p in ports)
    workers = [f"127.0.0.1:{p}" for p in ports[:2]]
    config = json.loads(distribute.tf_config(workers, 1))
    assert config == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": 1}}
    with pytest.raises(ValueError):
        distribute.tf_config(workers, 2)


def test_scaled_learning_rate() -> None:
    assert distribute.scaled_learning_rate(1e-4, 256, 32) == pytest.approx(8e-4)
    with pytest.raises(ValueError):
        distribute.scaled_learning_rate(1e-4, 0, 32)


def test_multiworker_needs_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        distribute.make_strategy("multiworker")
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.make_strategy("parameter-server")


class _Resolver:
    """Just what ``is_chief`` reads of a ``tf.distribute`` cluster resolver."""

    def __init__(self, spec: dict, task_type: str, task_id: int) -> None:
        self._spec, self.task_type, self.task_id = spec, task_type, task_id

    def cluster_spec(self):
        return SimpleNamespace(as_dict=lambda: self._spec)


@pytest.mark.parametrize(
    ("spec", "task", "chief"),
    [
        ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
        ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
        ({}, ("worker", 3), True),
    ],
)
def test_is_chief(spec: dict, task: tuple[str, int], chief: bool) -> None:
    strategy = SimpleNamespace(cluster_resolver=_Resolver(spec, *task))
    assert distribute.is_chief(strategy) is chief


def test_one_process_is_chief_and_no_cluster() -> None:
    default = tf.distribute.get_strategy()
    assert distribute.is_chief(None) and distribute.is_chief(default)
    assert distribute.is_multi_worker(default) is False
    assert distribute.make_strategy("default") is default


def test_shard_by_data_sets_the_policy() -> None:
    ds = distribute.shard_by_data(tf.data.Dataset.range(4))
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    assert list(ds.as_numpy_iterator()) == [0, 1, 2, 3]


def test_worker_summary_reads_digests() -> None:
    results = [cluster.WorkerResult(0, 0, "...\nWeights digest 0123456789ab\n"),
               cluster.WorkerResult(1, 1, "Traceback ...")]
    assert cluster.worker_summary(results) == {
        "returncodes": [0, 1], "digests": ["0123456789ab", None]}


def test_weights_digest_tells_weights_apart() -> None:
    runtime.set_seed(0)
    a = models.seed_cnn()
    b = models.seed_cnn()
    assert len(distribute.weights_digest(a)) == 12
    assert distribute.weights_digest(a) != distribute.weights_digest(b)
    b.set_weights(a.get_weights())
    assert distribute.weights_digest(a) == distribute.weights_digest(b)
    copy = distribute.local_copy(a)
    assert copy is not a and distribute.weights_digest(copy) == distribute.weights_digest(a)


class _Workers:
    """A stand-in multi-worker strategy whose workers' checkpoints hold ``epochs``: its
    ``reduce`` averages what each worker would contribute, ``n`` and ``n**2``."""

    def __init__(self, epochs: list[int]) -> None:
        self.epochs = epochs

    def run(self, fn):
        return fn()

    def reduce(self, op, values, axis=None):
        assert op == tf.distribute.ReduceOp.MEAN and axis is None
        n = tf.constant(self.epochs, tf.float32)
        return tf.stack([tf.reduce_mean(n), tf.reduce_mean(n * n)])


@pytest.mark.parametrize(("epochs", "here", "agree"), [
    ([3, 3], 3, True), ([0, 0, 0], 0, True),
    ([3, 2], 3, False),  # the means differ from this worker's epoch
    ([1, 3], 2, False),  # the mean is this worker's, but not every worker's
    ([0, 2], 0, False),
])
def test_workers_disagreement_needs_every_worker_at_one_epoch(epochs, here, agree) -> None:
    problem = distribute.workers_disagreement(_Workers(epochs), here)
    if agree:
        assert problem is None
    else:
        assert problem is not None and "resume from different epochs" in problem
        assert ("from the start" if here == 0 else f"after epoch {here}") in problem
        assert "same output folder" in problem and "--no-resume" in problem
