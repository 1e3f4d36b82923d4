"""Timed runs, tables, grid search and comparisons (chapters 9 and 10): cifar_tutorial.experiments."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_tutorial import experiments, models, train
from cifar_tutorial.records import History
from tests.fixtures import history_records, synthetic_data

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 240  # generous: the 2 cores are shared with other jobs


def _history(train_acc, val_acc, val_loss, seconds=1.0) -> History:
    return History(history_records(train_acc, val_acc, val_loss, seconds))


def test_text_table_aligns_and_marks_missing_values() -> None:
    rows = [{"name": "a", "acc": 0.5, "n": 3}, {"name": "longer", "acc": None, "n": 12}]
    text = experiments.text_table(rows, {"name": "", "acc": ".3f", "n": "d", "gone": ".1f"})
    lines = text.splitlines()
    assert lines[0].split() == ["name", "acc", "n", "gone"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["a", "0.500", "3", "-"]
    assert lines[3].split() == ["longer", "-", "12", "-"]
    assert len({len(line) for line in (lines[0], lines[2], lines[3])}) == 1  # fixed width


def test_run_summary_finds_best_epochs_and_gap() -> None:
    h = _history([0.5, 0.7, 0.9], [0.45, 0.60, 0.58], [1.5, 1.2, 1.4], seconds=2.0)
    s = experiments.run_summary(h)
    assert s["epochs"] == 3 and s["best_epoch"] == 2 and s["min_loss_epoch"] == 2
    assert s["best_val_acc"] == 0.60 and s["min_val_loss"] == 1.2 and s["last_val_loss"] == 1.4
    assert s["gap"] == pytest.approx(0.9 - 0.58)
    assert s["seconds"] == 6.0
    assert experiments.run_summary(h, seconds=10.0)["seconds"] == 10.0


def test_text_table_splits_headers_over_lines() -> None:
    rows = [{"name": "a", "acc": 0.5}, {"name": "bb", "acc": 0.25}]
    text = experiments.text_table(rows, {"name": "", "acc": ".2f"},
                                  headers={"acc": "val\naccuracy"})
    lines = text.splitlines()
    assert lines[0].split() == ["val"] and lines[1].split() == ["name", "accuracy"]
    assert set(lines[2]) == {"-"} and len(lines[2]) == len(lines[1]) == len(lines[3])
    assert lines[3].endswith(" 0.50") and lines[4].split() == ["bb", "0.25"]
    # the column is as wide as its widest header line, not the whole header
    assert len(lines[1]) == len("name") + 2 + len("accuracy")


def test_runs_table_has_one_line_per_run_and_fits_80_characters() -> None:
    runs = {
        "plain": _history([0.5, 0.9], [0.5, 0.55], [1.3, 1.5]),
        "a name of 25 characters..": _history([0.4, 0.6], [0.45, 0.6], [1.4, 1.2]),
    }
    lines = experiments.runs_table(runs).splitlines()
    assert len(lines) == 5
    assert "best val" in lines[0] and lines[1].startswith("run") and "acc (epoch)" in lines[1]
    assert lines[3].startswith("plain") and "0.550 (2)" in lines[3] and "1.300 (1)" in lines[3]
    assert "+0.350" in lines[3] and "+0.000" in lines[4]
    assert max(map(len, lines)) <= 80, max(map(len, lines))


def test_run_experiment_is_reproducible(tiny_data) -> None:
    runs = [
        experiments.run_experiment(models.seed_cnn, tiny_data, epochs=1, batch_size=16,
                                   learning_rate=3e-3, seed=3, verbose=0)
        for _ in range(2)
    ]
    assert isinstance(runs[0], experiments.Experiment) and runs[0].seconds > 0
    assert runs[0].history["loss"] == runs[1].history["loss"]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_run_experiment_passes_compile_options(tiny_data) -> None:
    run = experiments.run_experiment(models.seed_cnn, tiny_data, epochs=1, batch_size=16,
                                     label_mode="onehot", label_smoothing=0.1, verbose=0)
    assert train.label_mode_of(run.model) == "onehot"


def test_grid_search_ranks_on_validation_and_puts_diverged_runs_last(monkeypatch) -> None:
    seen = []

    def fake_run(build, data, *, epochs, seed, verbose, **config):
        seen.append(config)
        if config["learning_rate"] == 10.0:
            raise train.TrainingDiverged("boom", 1)
        acc = {1e-3: 0.4, 1e-2: 0.6}[config["learning_rate"]] + config["batch_size"] / 1e4
        return experiments.Experiment(None, _history([acc], [acc], [1.0]), 1.0)

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    grid = {"learning_rate": [1e-3, 10.0, 1e-2], "batch_size": [64, 256]}
    results = experiments.grid_search(None, None, grid, epochs=1, optimizer="adam")
    assert len(results) == len(seen) == 6
    assert all(c["optimizer"] == "adam" for c in seen)
    assert [(r["learning_rate"], r["batch_size"]) for r in results[:4]] == [
        (1e-2, 256), (1e-2, 64), (1e-3, 256), (1e-3, 64)
    ]
    assert all(r["diverged"] and math.isnan(r["val_acc"]) for r in results[4:])
    assert set(results[0]) >= {"val_acc", "val_loss", "train_acc", "seconds", "diverged"}


def test_read_bench_results(tmp_path) -> None:
    records = [{"epoch": e, "test_accuracy": a, "elapsed_seconds": t, "cpu_per_wall": c}
               for e, a, t, c in ((1, 0.5, 60.0, 1.5), (2, None, 120.0, 2.0), (3, 0.9, 180.0, 1.0))]
    summary = {"epochs": 8.0, "precision": "float32", "batch_size": 512, "params": 1973944,
               "train_seconds": 1500.0, "images_per_s": 266.0, "epoch_to_90": 6,
               "test_accuracy": {"none": 0.93, "flip": 0.935, "flip_shift": 0.937}}
    result = {
        "commit": "0123456789abcdef", "data": {"name": "cifar10", "format": "png", "original": True},
        "args": {"seed": 1, "epochs": 8.0},
        "history": {"records": records, "summary": summary, "stopped_early": False},
        "machine": {"cpu_count": 2},
        "versions": {"tensorflow": "2.21.0"},
    }
    (tmp_path / "fast_recipe_seed1.json").write_text(json.dumps(result))
    rows, missing = experiments.read_bench_results(
        [tmp_path / "fast_recipe_seed0.json", tmp_path / "fast_recipe_seed1.json"]
    )
    assert missing == ["fast_recipe_seed0.json"]
    (row,) = rows
    assert row["file"] == "fast_recipe_seed1.json" and row["seed"] == 1
    assert row["train_min"] == 25.0 and row["test_acc_tta"] == 0.935
    assert row["tensorflow"] == "2.21.0" and row["epoch_to_90"] == 6 and row["cpu_count"] == 2
    assert row["commit"] == "0123456789abcdef" and row["data"] == "cifar10"
    assert row["data_original"] is True
    assert row["curve_min"] == [1.0, 3.0] and row["curve_acc"] == [0.5, 0.9]
    assert row["curve_epoch"] == [1, 3]  # the epoch without a test accuracy is left out
    assert row["cores"] == pytest.approx(1.5)


def test_read_bench_results_tolerates_missing_keys(tmp_path) -> None:
    (tmp_path / "partial.json").write_text(json.dumps({"args": {"seed": 0}}))
    rows, missing = experiments.read_bench_results([tmp_path / "partial.json"])
    assert missing == [] and rows[0]["seed"] == 0
    assert rows[0]["train_min"] is None and rows[0]["test_acc"] is None
    assert rows[0]["curve_min"] == [] and rows[0]["curve_acc"] == [] and rows[0]["cores"] is None
    assert rows[0]["data_original"] is None


def test_throughput_is_the_fastest_epoch_after_the_first(monkeypatch) -> None:
    histories = []

    def recording(*args, **kwargs):
        histories.append(real_train(*args, **kwargs))
        return histories[-1]

    real_train = train.train
    monkeypatch.setattr(train, "train", recording)
    speed = experiments.throughput(synthetic_data(64), batch_size=32, epochs=3, model="seed")
    (history,) = histories
    seconds = history["seconds"]
    assert len(seconds) == 3
    assert speed == pytest.approx(64 / min(seconds[1:]))
    with pytest.raises(ValueError, match="at least 2"):
        experiments.throughput(synthetic_data(64), epochs=1)


# The agreement asked of one device and two replicas, as a share of the largest change
# training made to any weight: max |w_replicas - w_one| <= RELATIVE_TOLERANCE *
# max |w_one - w_start|. Summing two half-batch gradients instead of one full-batch
# gradient only reorders float32 additions: that costs about 1e-6 of the update here
# (measured 1e-6 to 2e-6 over 5 SGD steps). A bug in the averaging shows at the scale
# of the update itself: a loss summed instead of averaged over replicas doubles each
# step (relative difference of order 1), and a last, unevenly split batch averaged per
# replica (what compute_average_loss does without the global count, and what Keras' fit
# does) moved the weights by 0.19 of the update. 1e-4 sits two orders of magnitude
# above the rounding and three below the smallest bug. SGD is used because Adam
# divides a wrong gradient scale out and would hide it.
RELATIVE_TOLERANCE = 1e-4

COMPARE_SCRIPT = """
import json
from cifar_tutorial import distribute, experiments, runtime
from tests.fixtures import synthetic_data

devices = distribute.split_cpu(2)  # before anything else touches TensorFlow's devices
runtime.set_seed(0)
out = {"devices": devices}
# fit: 72 images in batches of 16 end with a batch of 8, split 4 + 4.
# custom: 69 images end with a batch of 5, split 3 + 2 between the replicas.
for loop, n in (("fit", 72), ("custom", 69)):
    c = experiments.compare_with_one_device(synthetic_data(n), loop=loop, batch_size=16,
                                            learning_rate=0.05)
    out[loop] = {**c.__dict__, "relative_difference": c.relative_difference}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def mirrored_runs() -> dict:
    """Run the single-device versus two-replica comparison once, in a fresh process
    (the CPU must be split before TensorFlow sets up its devices)."""
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
