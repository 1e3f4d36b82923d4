"""The command line under stress: bad input, SIGKILL, Ctrl-C, NaN, reproducibility.

Real processes are started once per module and run side by side (each start of
TensorFlow costs seconds); the tests then read what they left behind:

- ``a`` and ``b``: the same training twice, uninterrupted;
- ``interrupted``, ``killed``, ``resumed``: the same training again, stopped with
  SIGINT (Ctrl-C) in its second epoch, started again and SIGKILLed in its third,
  then started again to the end;
- ``missing``: a data folder that does not exist.

The other refusals run ``cifar_tutorial.cli.main`` in this process, which is what
``python -m cifar_tutorial`` calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_tutorial import cli, sources
from tests.fixtures import BAD_FOLDERS, closed_port, fresh_folder, make_image_folder

DELAY = 0.3
"""Seconds each training batch waits in the slowed runs, so that an epoch lasts
long enough to be interrupted in its middle."""

SLOW_CLI = f"""
import signal
import time
from cifar_tutorial import train
from cifar_tutorial.cli import main

guard_batch_end = train._NaNGuard.on_train_batch_end

def slow_batch_end(self, batch, logs=None):
    time.sleep({DELAY})  # in the main thread, where signals are handled
    return guard_batch_end(self, batch, logs)

train._NaNGuard.on_train_batch_end = slow_batch_end
# A shell without job control starts background jobs with SIGINT ignored, and Python
# keeps it ignored; Ctrl-C in a terminal reaches a process that handles it.
signal.signal(signal.SIGINT, signal.default_int_handler)
raise SystemExit(main())
"""
"""``python -m cifar_tutorial`` with every training batch slowed down by :data:`DELAY`,
and SIGINT handled as in a terminal (test-side only; the values trained on are
unchanged)."""

EPOCHS = 4
DEADLINE = 240.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CIFAR10_DIR"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def _start(args: list, logs: Path, slow: bool = False) -> subprocess.Popen:
    """Start the command line; stdout and stderr go to ``logs.stdout`` and ``logs.stderr``."""
    head = [sys.executable, "-c", SLOW_CLI] if slow else [sys.executable, "-m", "cifar_tutorial"]
    with open(logs.with_suffix(".stdout"), "w") as out, open(logs.with_suffix(".stderr"), "w") as err:
        return subprocess.Popen(head + [str(a) for a in args], stdout=out, stderr=err, env=_env())


def _epochs_done(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())["epochs_done"]
    except (OSError, ValueError, KeyError):
        return 0


class Run:
    """What a finished process left: exit code, stdout, stderr and its output folder."""

    def __init__(self, proc: subprocess.Popen, logs: Path, out: Path) -> None:
        self.returncode = proc.wait(timeout=DEADLINE)
        self.out = out
        self.stdout = logs.with_suffix(".stdout").read_text()
        self.stderr = logs.with_suffix(".stderr").read_text()
        self.epochs_at_stop = _epochs_done(out)
        self.had_model = (out / "model.keras").exists()

    def __repr__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"

    def history(self) -> list[dict]:
        """history.json's records without the timings (which differ between runs)."""
        records = json.loads((self.out / "history.json").read_text())["records"]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    def weights(self) -> list[np.ndarray]:
        """The weights of the saved ``model.keras``."""
        return keras.models.load_model(self.out / "model.keras").get_weights()


def _signal_mid_epoch(proc: subprocess.Popen, out: Path, sig: int) -> None:
    """Send ``sig`` into the middle of the epoch after the next one to finish."""
    deadline = time.monotonic() + DEADLINE
    done = _epochs_done(out)
    while _epochs_done(out) <= done:
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.05)
    time.sleep(2 * DELAY)  # an epoch lasts 9 batches x DELAY
    if proc.poll() is None:
        proc.send_signal(sig)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 classes x 8 training and 2 test images (PNG): 70 to train, 10 to validate."""
    return make_image_folder(tmp_path_factory.mktemp("cli") / "cifar", 8, 2, fmt="png")


def _train_args(folder: Path, out: Path) -> list:
    return ["train", "--data-dir", folder, "--out", out, "--epochs", EPOCHS,
            "--batch-size", 8, "--lr", "1e-3", "--seed", 7]


@pytest.fixture(scope="module")
def runs(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Run the processes of the module side by side and collect what they left.

    ``a``, ``b`` and ``missing`` run once. Meanwhile one slowed training in ``chain/``
    gets SIGINT in its second epoch (``interrupted``), is started again and gets
    SIGKILL in its third (``killed``), and is started again to the end (``resumed``).
    """
    base = tmp_path_factory.mktemp("runs")
    chain = base / "chain"
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(name: str, args: list, out: Path, slow: bool = False) -> subprocess.Popen:
        procs[name] = (_start(args, base / name, slow=slow), out)
        return procs[name][0]

    results: dict[str, Run] = {}
    try:
        start("a", _train_args(folder, base / "a"), base / "a")
        start("b", _train_args(folder, base / "b"), base / "b")
        start("missing", ["train", "--data-dir", base / "nowhere", "--out", base / "missing"],
              base / "missing")
        for name, sig in (("interrupted", signal.SIGINT), ("killed", signal.SIGKILL), ("resumed", None)):
            proc = start(name, _train_args(folder, chain), chain, slow=True)
            if sig is not None:
                _signal_mid_epoch(proc, chain, sig)
            results[name] = Run(proc, base / name, chain)
        for name in ("a", "b", "missing"):
            results[name] = Run(procs[name][0], base / name, procs[name][1])
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results


# --------------------------------------------------------------------------- interruption


@pytest.mark.slow  # the module's real processes train for about half a minute
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(runs: dict[str, Run]) -> None:
    stopped = runs["interrupted"]
    assert stopped.returncode == cli.EXIT_INTERRUPTED, stopped
    assert "Traceback" not in stopped.stderr
    assert "interrupted during epoch 2" in stopped.stderr and "resume" in stopped.stderr
    assert stopped.epochs_at_stop == 1 and "1 finished epoch(s) kept" in stopped.stderr
    assert not stopped.had_model


@pytest.mark.slow  # the module's real processes train for about half a minute
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches(runs: dict[str, Run]) -> None:
    killed, resumed, a = runs["killed"], runs["resumed"], runs["a"]
    assert "Resuming after epoch 1" in killed.stdout, killed
    assert killed.returncode == -signal.SIGKILL, killed
    assert killed.epochs_at_stop == 2, "the kill must land in the third epoch"
    assert not killed.had_model
    assert resumed.returncode == 0, resumed
    assert "Resuming after epoch 2" in resumed.stdout
    assert a.returncode == 0, a
    assert len(resumed.history()) == len(a.history()) == EPOCHS
    assert resumed.history() == a.history()
    for x, y in zip(a.weights(), resumed.weights(), strict=True):
        assert np.array_equal(x, y)


@pytest.mark.slow  # the module's real processes train for about half a minute
def test_outputs_leave_no_temporary_files(runs: dict[str, Run]) -> None:
    for name in ("a", "resumed"):
        out = runs[name].out
        names = sorted(p.name for p in out.iterdir())
        assert {"model.keras", "history.json", "history.csv", "metrics.json", "checkpoint"} <= set(names)
        assert not [n for n in names if n.startswith(".")], names
        weights = sorted(p.name for p in (out / "checkpoint").iterdir() if not p.name.startswith("."))
        assert weights == [f"epoch-{EPOCHS:04d}.weights.h5", "state.json"]
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["epochs_trained"] == EPOCHS


def test_ctrl_c_after_training_does_not_claim_nothing_ran(
    folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Ctrl-C while evaluating or writing: the finished epochs are kept and resumable."""
    import cifar_tutorial.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cifar_tutorial.evaluate, "evaluate", interrupted)
    out = tmp_path / "out"
    code, err = _main(["train", "--data-dir", folder, "--out", out, "--epochs", 1,
                       "--batch-size", 8, "--quiet"], capsys)
    assert code == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err and "before training" not in err
    assert "resume" in err and str(out / "checkpoint") in err
    assert _epochs_done(out) == 1


# --------------------------------------------------------------------------- reproducibility


@pytest.mark.slow  # the module's real processes train for about half a minute
def test_same_seed_gives_bit_identical_runs(runs: dict[str, Run]) -> None:
    a, b = runs["a"], runs["b"]
    assert a.returncode == 0 and b.returncode == 0, (a, b)
    assert a.history() == b.history()
    assert len(a.history()) == EPOCHS and all(np.isfinite(r["loss"]) for r in a.history())
    for x, y in zip(a.weights(), b.weights(), strict=True):
        assert np.array_equal(x, y)


# --------------------------------------------------------------------------- refusals


def _one_error(stderr: str) -> str:
    """Check stderr holds one ``error:`` line and no traceback; return that line."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.slow  # the module's real processes train for about half a minute
def test_missing_data_folder_in_a_real_process(runs: dict[str, Run]) -> None:
    run = runs["missing"]
    assert run.returncode == cli.EXIT_BAD_INPUT, run
    line = _one_error(run.stderr)
    assert line.startswith("error: data folder") and "does not exist" in line
    assert "CIFAR10_DIR" in run.stderr  # how to fix it
    assert not (run.out / "checkpoint").exists() and not (run.out / "model.keras").exists()


def _main(argv: list, capsys) -> tuple[int, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's refusals
        code = exit_.code
    return code, capsys.readouterr().err


def _nothing_written(out: Path) -> None:
    assert not (out / "checkpoint").exists()
    assert not list(out.glob("*.keras")) and not (out / "history.json").exists()


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_bad_data_folder_exits_2_with_one_error(tmp_path: Path, case: str, capsys) -> None:
    breaker, fragments = BAD_FOLDERS[case]
    data_dir = breaker(fresh_folder(tmp_path))
    code, err = _main(["train", "--data-dir", data_dir, "--out", tmp_path / "out", "--epochs", 1], capsys)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_error(err)
    assert line.startswith("error: ")
    for fragment in fragments:
        assert fragment in err
    _nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--epochs", "-2"], "--epochs: must be at least 1"),
        (["--epochs", "two"], "--epochs: expected a whole number"),
        (["--model", "resnet"], "--model: invalid choice: 'resnet'"),
        (["--head", "sigmoid"], "--head: invalid choice: 'sigmoid'"),
        (["--lr", "0"], "--lr: must be positive"),
        (["--batch-size", "0"], "--batch-size: must be at least 1"),
        (["--model", "fast", "--head", "l2"], "takes no --head"),
        (["--batch-size", "71"], "batch_size 71 is larger than the training set (70 images)"),
    ],
)
def test_bad_arguments_are_refused_before_training(
    folder: Path, tmp_path: Path, args: list[str], fragment: str, capsys
) -> None:
    out = tmp_path / "out"
    code, err = _main(["train", "--data-dir", folder, "--out", out, "--epochs", 1, *args], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert fragment in _one_error(err)
    if out.exists():
        _nothing_written(out)


def test_unwritable_output_folder_is_refused(folder: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("a regular file")
    out = tmp_path / "file" / "out"
    start = time.perf_counter()
    code, err = _main(["train", "--data-dir", folder, "--out", out, "--epochs", 50], capsys)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_error(err)
    assert "cannot write to output folder" in line and "--out" in line
    assert time.perf_counter() - start < 10


def test_evaluate_refuses_a_missing_model(folder: Path, tmp_path: Path, capsys) -> None:
    code, err = _main(["evaluate", "--model-path", tmp_path / "none.keras", "--data-dir", folder], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert "does not exist; train one first" in _one_error(err)


def test_exploding_loss_exits_3_and_names_the_epoch(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, err = _main(["train", "--data-dir", folder, "--out", out, "--epochs", 3,
                       "--batch-size", 8, "--lr", 1000, "--quiet"], capsys)
    assert code == cli.EXIT_DIVERGED
    line = _one_error(err)
    assert "in epoch 1" in line and "learning rate (1000)" in line and "10x smaller" in line
    _nothing_written(out)


def test_offline_tfds_exits_2_in_seconds(tmp_path: Path, monkeypatch, capsys) -> None:
    import tensorflow_datasets  # noqa: F401 - import time is not what we measure

    monkeypatch.setattr(sources, "TFDS_HOST", ("127.0.0.1", closed_port()))
    out = tmp_path / "out"
    start = time.perf_counter()
    code, err = _main(["train", "--source", "tfds", "--tfds-data-dir", tmp_path / "tfds",
                       "--out", out, "--epochs", 1], capsys)
    assert time.perf_counter() - start < 10
    assert code == cli.EXIT_BAD_INPUT
    assert "cannot be reached" in _one_error(err)
    assert "CIFAR10_DIR" in err  # how to get the data instead
    _nothing_written(out)


# --------------------------------------------------------------------------- evaluate and fast


@pytest.mark.slow  # the module's real processes train for about half a minute
def test_evaluate_scores_a_saved_model_with_tta(runs: dict[str, Run], folder: Path, tmp_path: Path,
                                                capsys) -> None:
    model = runs["a"].out / "model.keras"
    results = {}
    for tta in ([], ["--tta"], ["--tta", "flip_shift"]):
        out = tmp_path / f"out{len(tta)}"
        code, err = _main(["evaluate", "--model-path", model, "--data-dir", folder,
                           "--out", out, *tta], capsys)
        assert code == 0, err
        metrics = json.loads((out / "metrics.json").read_text())
        results[metrics["tta"]] = metrics["test_accuracy"]
    assert list(results) == ["none", "flip", "flip_shift"]
    trained = json.loads((runs["a"].out / "metrics.json").read_text())
    assert results["none"] == trained["test_accuracy"]  # the same model, the same images


def test_fast_recipe_through_the_command_line(folder: Path, tmp_path: Path, capsys) -> None:
    code, err = _main(["train", "--model", "fast", "--epochs", "1", "--batch-size", "30",
                       "--data-dir", folder, "--out", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == "fast" and metrics["epochs_trained"] == 1
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["summary"]["steps"] == 70 // 30 and len(history["records"]) == 1
    reloaded = keras.models.load_model(tmp_path / "model.keras")  # safe mode: no lambdas
    assert reloaded.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 10)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--strategy", "mirrored"], "takes no --strategy or --scale-lr"),
     (["--scale-lr"], "takes no --strategy or --scale-lr")],
)
def test_fast_recipe_refuses_what_it_does_not_use(folder: Path, tmp_path: Path, args: list[str],
                                                  fragment: str, capsys) -> None:
    code, err = _main(["train", "--model", "fast", *args, "--data-dir", folder,
                       "--out", tmp_path], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert fragment in _one_error(err)
    _nothing_written(tmp_path)
