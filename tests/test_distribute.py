"""Distributed training (chapter 9): several replicas compute what one device computes.

- ``MirroredStrategy`` on two logical CPU devices, with both training loops, ends with
  the weights of single-device training on the same data (a subprocess, because the
  CPU must be split before TensorFlow sets up its devices);
- two ``MultiWorkerMirroredStrategy`` workers on 127.0.0.1, started through the
  command line, finish with equal weights, and only the chief writes files.

No real CIFAR-10 is needed: the data is synthetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_tutorial import distribute
from tests.fixtures import make_image_folder

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 240  # generous: the 2 cores are shared with other jobs

# Agreement asked of the two runs, as a share of the largest change training made to
# any weight: max |w_replicas - w_one| <= RELATIVE_TOLERANCE * max |w_one - w_start|.
# Summing two half-batch gradients instead of one full-batch gradient only reorders
# float32 additions: that costs about 1e-6 of the update here (measured 1e-6 to 2e-6
# over 5 SGD steps). A bug in the averaging shows at the scale of the update itself:
# a loss summed instead of averaged over replicas doubles each step (relative
# difference of order 1), and a last, unevenly split batch averaged per replica
# (what compute_average_loss does without the global count, and what Keras' fit
# does) moved the weights by 0.19 of the update. 1e-4 sits two orders of magnitude
# above the rounding and three below the smallest bug. SGD is used because Adam
# divides a wrong gradient scale out and would hide it.
RELATIVE_TOLERANCE = 1e-4

COMPARE_SCRIPT = """
import json, sys
from cifar_tutorial import distribute, runtime

devices = distribute.split_cpu(2)  # before anything else touches TensorFlow's devices
runtime.set_seed(0)
import numpy as np
from cifar_tutorial.data import CLASS_NAMES, CifarData

def synthetic(n):
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 10).astype(np.int32)
    x = np.clip(rng.normal(100 + 12 * y[:, None, None, None], 40, (n, 32, 32, 3)), 0, 255)
    empty_x, empty_y = np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int32)
    return CifarData(x.astype(np.uint8), y, empty_x, empty_y, x[:10].astype(np.uint8),
                     y[:10], CLASS_NAMES, "synthetic")

out = {"devices": devices}
# fit: 72 images in batches of 16 end with a batch of 8, split 4 + 4.
# custom: 69 images end with a batch of 5, split 3 + 2 between the replicas.
for loop, n in (("fit", 72), ("custom", 69)):
    c = distribute.compare_with_one_device(synthetic(n), loop=loop, batch_size=16,
                                           learning_rate=0.05)
    out[loop] = {**c.__dict__, "relative_difference": c.relative_difference}
try:
    distribute.split_cpu(3)
except RuntimeError as err:
    out["late_split"] = str(err)
out["same_split_again"] = distribute.split_cpu(2)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def mirrored_runs() -> dict:
    """Run the single-device versus two-replica comparison once, in a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE_SCRIPT], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_two_replicas_match_one_device(mirrored_runs: dict, loop: str) -> None:
    run = mirrored_runs[loop]
    assert len(mirrored_runs["devices"]) == 2
    assert run["replicas"] == 2 and run["steps"] == 5
    assert run["max_update"] > 1e-3, "training must have moved the weights"
    assert run["relative_difference"] < RELATIVE_TOLERANCE, run
    assert run["loss_replicas"] == pytest.approx(run["loss_one"], abs=1e-5)


@pytest.mark.slow
def test_split_cpu_refuses_late_changes(mirrored_runs: dict) -> None:
    assert "call split_cpu before any other TensorFlow work" in mirrored_runs["late_split"]
    assert mirrored_runs["same_split_again"] == mirrored_runs["devices"]


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
    results = distribute.run_local_workers(
        commands, timeout=SUBPROCESS_TIMEOUT_S,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(scratch), "MPLBACKEND": "Agg"},
    )
    logs = "\n".join(f"--- worker {r.index}\n{r.output[-3000:]}" for r in results)
    summary = distribute.worker_summary(results)
    assert not any(r.timed_out for r in results), logs
    assert summary["returncodes"] == [0, 0], logs
    # Both trained with 2 replicas and ended with bit-identical weights.
    assert all("2 replica(s)" in r.output for r in results), logs
    assert summary["digests"][0] is not None and summary["digests"][0] == summary["digests"][1]
    # The chief wrote everything; the other worker wrote nothing, not even scratch files.
    for name in ("model.keras", "metrics.json", "history.json", "checkpoint/state.json"):
        assert (outs[0] / name).is_file(), name
    assert json.loads((outs[0] / "metrics.json").read_text())["replicas"] == 2
    assert [p for p in outs[1].rglob("*") if p.is_file()] == []
    assert list(scratch.iterdir()) == []


def test_tf_config_and_ports() -> None:
    ports = distribute.free_ports(3)
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
