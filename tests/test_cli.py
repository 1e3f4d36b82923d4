"""The command line under stress: bad input, SIGKILL, Ctrl-C, NaN, reproducibility, predict.

Real processes are started once per module and run side by side (each start of
TensorFlow costs seconds); the tests then read what they left behind:

- ``a`` and ``b``: the same training of the seed CNN twice, uninterrupted;
- ``interrupted``, ``killed``, ``resumed``: the same training again, stopped with
  SIGINT (Ctrl-C) in its second epoch, started again and SIGKILLed in its third,
  then started again to the end;
- ``fast``, and ``fast_interrupted``, ``fast_killed``, ``fast_resumed``: the same
  for ``--model fast`` (a narrow net, so that it trains in seconds);
- ``missing``: a data folder that does not exist.

The other refusals, ``evaluate`` and ``predict`` run ``cifar_tutorial.cli.main`` in
this process, which is what ``python -m cifar_tutorial`` calls.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_tutorial import cli, distribute, evaluate, models, plots, predict, recipes, sources
from tests.fixtures import BAD_FOLDERS, closed_port, fresh_folder, make_image_folder

DELAY = 0.3
"""Seconds each training batch waits in the slowed runs, so that an epoch lasts
long enough to be interrupted in its middle."""

SLOW_CLI = f"""
import signal
import time
from cifar_tutorial.cli import import_tensorflow, main

import_tensorflow()  # as main() does, before the module below brings TensorFlow in
from cifar_tutorial import train

guard_batch_end = train.StopOnDivergence.on_train_batch_end

def slow_batch_end(self, batch, logs=None):
    time.sleep({DELAY})  # in the main thread, where signals are handled
    return guard_batch_end(self, batch, logs)

train.StopOnDivergence.on_train_batch_end = slow_batch_end
# A shell without job control starts background jobs with SIGINT ignored, and Python
# keeps it ignored; Ctrl-C in a terminal reaches a process that handles it.
signal.signal(signal.SIGINT, signal.default_int_handler)
raise SystemExit(main())
"""
"""``python -m cifar_tutorial`` with every training batch slowed down by :data:`DELAY`,
and SIGINT handled as in a terminal (test-side only; the values trained on are
unchanged)."""

FAST_WIDTHS = (8, 16, 16)

FAST_CLI = f"""
import functools
import signal
import sys
import time
from cifar_tutorial.cli import import_tensorflow, main

import_tensorflow()  # as main() does, before the module below brings TensorFlow in
from cifar_tutorial import recipes

recipes.FastHyperparameters = functools.partial(recipes.FastHyperparameters,
                                                widths={FAST_WIDTHS})
delay = float(sys.argv.pop(1))
run_step = recipes._Steps.run

def slow_run(self, step, images, labels):
    time.sleep(delay)
    return run_step(self, step, images, labels)

recipes._Steps.run = slow_run
signal.signal(signal.SIGINT, signal.default_int_handler)
raise SystemExit(main())
"""
"""``python -m cifar_tutorial`` for ``--model fast`` with the conv blocks
:data:`FAST_WIDTHS` wide and each step delayed by the seconds given as the first
argument (test-side only)."""

EPOCHS = 4
FAST_EPOCHS = 3
DEADLINE = 240.0
TIMINGS = ("seconds", "images_per_s", "cpu_per_wall", "elapsed_seconds")
"""History keys that measure time, which differs between runs."""

LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|absl::InitializeLog", re.M)
"""A C++ log line of TensorFlow, or absl's banner before them."""


def _env() -> dict[str, str]:
    # No TF_CPP_MIN_LOG_LEVEL: the package's own default must keep stderr clean.
    env = {k: v for k, v in os.environ.items() if k not in ("CIFAR10_DIR", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def _command(args: list, script: str | None = None, delay: float | None = None) -> list[str]:
    head = [sys.executable, "-m", "cifar_tutorial"] if script is None else [sys.executable, "-c", script]
    if delay is not None:
        head.append(str(delay))
    return head + [str(a) for a in args]


def _start(args: list, logs: Path, script: str | None = None, delay: float | None = None,
           ) -> subprocess.Popen:
    """Start the command line; stdout and stderr go to ``logs.stdout`` and ``logs.stderr``."""
    with open(logs.with_suffix(".stdout"), "w") as out, open(logs.with_suffix(".stderr"), "w") as err:
        return subprocess.Popen(_command(args, script, delay), stdout=out, stderr=err, env=_env())


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
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]

    def weights(self) -> list[np.ndarray]:
        """The weights of the saved ``model.keras``."""
        return keras.models.load_model(self.out / "model.keras").get_weights()

    def metrics(self) -> dict:
        return json.loads((self.out / "metrics.json").read_text())


def _signal_mid_epoch(proc: subprocess.Popen, out: Path, sig: int) -> None:
    """Send ``sig`` into the middle of the epoch after the next one to finish."""
    deadline = time.monotonic() + DEADLINE
    done = _epochs_done(out)
    while _epochs_done(out) <= done:
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.05)
    time.sleep(2 * DELAY)  # an epoch lasts 8 or 9 batches x DELAY
    if proc.poll() is None:
        proc.send_signal(sig)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 classes x 8 training and 2 test images (PNG): 70 to train, 10 to validate."""
    return make_image_folder(tmp_path_factory.mktemp("cli") / "cifar", 8, 2, fmt="png")


def _train_args(folder: Path, out: Path) -> list:
    return ["train", "--data-dir", folder, "--out", out, "--epochs", EPOCHS,
            "--batch-size", 8, "--lr", "1e-3", "--seed", 7]


def _fast_args(folder: Path, out: Path) -> list:
    return ["train", "--model", "fast", "--data-dir", folder, "--out", out,
            "--epochs", FAST_EPOCHS, "--batch-size", 8, "--seed", 3]


@pytest.fixture(scope="module")
def runs(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Run the processes of the module side by side and collect what they left.

    ``a``, ``b``, ``fast`` and ``missing`` run once. Meanwhile one slowed training of
    each kind (in ``chain/`` and ``fast_chain/``) gets SIGINT in its second epoch
    (``interrupted``), is started again and gets SIGKILL in its third (``killed``),
    and is started again to the end (``resumed``).
    """
    base = tmp_path_factory.mktemp("runs")
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    lock = threading.Lock()

    def start(name: str, args: list, out: Path, **kwargs) -> subprocess.Popen:
        proc = _start(args, base / name, **kwargs)
        with lock:
            procs[name] = (proc, out)
        return proc

    def chain(prefix: str, args: list, out: Path, **kwargs) -> dict[str, Run]:
        found = {}
        for name, sig in (("interrupted", signal.SIGINT), ("killed", signal.SIGKILL),
                          ("resumed", None)):
            proc = start(prefix + name, args, out, **kwargs)
            if sig is not None:
                _signal_mid_epoch(proc, out, sig)
            found[prefix + name] = Run(proc, base / (prefix + name), out)
        return found

    results: dict[str, Run] = {}
    try:
        start("a", _train_args(folder, base / "a"), base / "a")
        start("b", _train_args(folder, base / "b"), base / "b")
        start("fast", _fast_args(folder, base / "fast"), base / "fast", script=FAST_CLI, delay=0)
        start("missing", ["train", "--data-dir", base / "nowhere", "--out", base / "missing"],
              base / "missing")
        with ThreadPoolExecutor(2) as pool:
            chains = [
                pool.submit(chain, "", _train_args(folder, base / "chain"), base / "chain",
                            script=SLOW_CLI),
                pool.submit(chain, "fast_", _fast_args(folder, base / "fast_chain"),
                            base / "fast_chain", script=FAST_CLI, delay=DELAY),
            ]
            for future in chains:
                results.update(future.result())
        for name in ("a", "b", "fast", "missing"):
            results[name] = Run(procs[name][0], base / name, procs[name][1])
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
    return results


# --------------------------------------------------------------------------- start-up and help


def test_parser_choices_are_the_packages() -> None:
    assert cli.MODELS == (*models.MODELS, "fast")
    assert cli.HEADS == models.HEADS
    assert cli.STRATEGIES == distribute.STRATEGIES
    assert cli.REFERENCE_BATCH == distribute.REFERENCE_BATCH
    assert cli.TTA_LEVELS == evaluate.TTA_LEVELS


PARSE_ONLY = """
import sys
from cifar_tutorial import cli
parser = cli.build_parser()
parser.parse_args(["train", "--out", "x", "--model", "fast", "--epochs", "2"])
parser.parse_args(["evaluate", "--model-path", "m.keras", "--tta"])
parser.parse_args(["predict", "--model-path", "m.keras", "a.png", "b.jpg", "--json"])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""


def test_parsing_and_help_import_no_tensorflow_and_answer_at_once() -> None:
    parsed = subprocess.run([sys.executable, "-c", PARSE_ONLY], capture_output=True, text=True,
                            env=_env(), timeout=60)
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.strip() == "[]"
    for command in ([], ["train"], ["evaluate"], ["predict"]):
        start = time.perf_counter()
        shown = subprocess.run(_command([*command, "--help"]), capture_output=True, text=True,
                               env=_env(), timeout=60)
        seconds = time.perf_counter() - start
        assert shown.returncode == 0 and shown.stdout.startswith("usage:"), shown.stderr
        assert shown.stderr == ""
        assert seconds < 2.0, f"{command} --help took {seconds:.1f} s"  # about 0.1 s idle


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_lists_predict_and_each_command_only_its_options(capsys) -> None:
    top = _help(["--help"], capsys)
    assert "{train,evaluate,predict}" in top and "classify image files" in top
    evaluate_help = _help(["evaluate", "--help"], capsys)
    for option in ("--model-path", "--tta", "--out", "--data-dir", "--limit-test", "--verbose-tf"):
        assert option in evaluate_help
    for option in ("--val-fraction", "--limit-train", "--epochs", "--lr", "--seed", "--quiet"):
        assert option not in evaluate_help, option
    assert "evaluation.json" in evaluate_help
    predict_help = _help(["predict", "--help"], capsys)
    for option in ("--model-path", "IMAGE", "--top", "--json"):
        assert option in predict_help
    assert "--data-dir" not in predict_help and "--out" not in predict_help
    train_help = _help(["train", "--help"], capsys)
    assert "--no-resume" in train_help and "--tta" not in train_help


NOTICES = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796165420.071898    4240 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796165420.072234    4240 cudart_stub.cc:31] Could not find cuda drivers.
W0000 00:00:1796165420.1    4240 gpu_device.cc:2344] Cannot dlopen some GPU libraries.
E0000 00:00:1796165420.2    4240 cuda_dnn.cc:8310] Unable to register cuDNN factory
2024-05-01 10:00:00.000001: I tensorflow/core/util/port.cc:113] oneDNN custom operations.
To enable the following instructions: AVX512F FMA, rebuild TensorFlow.
/x/keras/src/trainers/epoch_iterator.py:74: UserWarning: `shuffle=True` was passed
F0000 00:00:1796165420.3    4240 main.cc:1] fatal
"""


@pytest.mark.parametrize(("level", "kept"), [
    (0, 9), (1, 4), (2, 3), (3, 2), (7, 2),
])
def test_tf_notices_are_filtered_as_tf_cpp_min_log_level_says(level: int, kept: int) -> None:
    lines = cli.without_tf_notices(NOTICES, level).splitlines()
    assert len(lines) == kept, lines
    assert "UserWarning" in lines[-2] and lines[-1].startswith("F0000")  # never dropped
    if level >= 1:
        assert not [line for line in lines if line.startswith(("I0000", "2024", "WARNING: All"))]
    if level == 2:
        assert lines[0].startswith("E0000")


CUINIT = ("E0000 00:00:1796592880.3   7497 cuda_platform.cc:52] failed call to cuInit: "
          "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
NO_DRIVER = ("I0000 00:00:1796592562.2   7497 cudart_stub.cc:31] Could not find cuda drivers "
             "on your machine, GPU will not be used.\n")


def test_a_failed_cuinit_is_an_error_only_where_a_driver_exists() -> None:
    """Level 2 shows C++ errors, but not cuInit failing on a machine with no CUDA driver."""
    assert cli.without_tf_notices(NO_DRIVER + CUINIT, 2) == ""
    assert cli.without_tf_notices(NO_DRIVER + CUINIT, 0) == NO_DRIVER + CUINIT
    assert cli.without_tf_notices(CUINIT, 2) == CUINIT  # a driver that fails: shown


IGNORED_ATTRIBUTE = (
    "E0000 00:00:1796595331.8   30443 node_def_util.cc:682] NodeDef mentions attribute "
    "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset> This may "
    "be expected if your graph generating binary is newer  than this binary. Unknown "
    "attributes will be ignored. NodeDef: {{node ParallelMapDatasetV2/_14}}\n")


def test_the_programs_stderr_is_filtered_while_it_runs() -> None:
    """After start-up too, C++ lines go through the filter and the rest comes through."""
    code = ("import os, sys\n"
            "from cifar_tutorial.cli import filter_stderr\n"
            "stop = filter_stderr()\n"
            f"os.write(2, {(IGNORED_ATTRIBUTE + CUINIT).encode()!r})\n"
            "print('a warning', file=sys.stderr)\n"
            "os.write(2, b'no newline at the end')\n"
            "stop()\n"
            "print('after', file=sys.stderr)\n")
    everything = IGNORED_ATTRIBUTE + CUINIT + "a warning\nno newline at the end"
    for level, shown in (("2", everything.removeprefix(IGNORED_ATTRIBUTE)), ("0", everything)):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**_env(), "TF_CPP_MIN_LOG_LEVEL": level}, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stderr == shown + "after\n"


# --------------------------------------------------------------------------- interruption


@pytest.mark.slow  # the module's real processes train for about a minute
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(runs: dict[str, Run]) -> None:
    for prefix in ("", "fast_"):
        stopped = runs[prefix + "interrupted"]
        assert stopped.returncode == cli.EXIT_INTERRUPTED, stopped
        assert "Traceback" not in stopped.stderr
        assert "interrupted during epoch 2" in stopped.stderr and "resume" in stopped.stderr
        assert stopped.epochs_at_stop == 1 and "1 finished epoch kept" in stopped.stderr
        assert not stopped.had_model


@pytest.mark.slow  # the module's real processes train for about a minute
@pytest.mark.parametrize(("prefix", "reference", "epochs"),
                         [("", "a", EPOCHS), ("fast_", "fast", FAST_EPOCHS)])
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches(
    runs: dict[str, Run], prefix: str, reference: str, epochs: int
) -> None:
    killed, resumed, a = runs[prefix + "killed"], runs[prefix + "resumed"], runs[reference]
    assert "Resuming after epoch 1" in killed.stdout, killed
    assert killed.returncode == -signal.SIGKILL, killed
    assert killed.epochs_at_stop == 2, "the kill must land in the third epoch"
    assert not killed.had_model
    assert resumed.returncode == 0, resumed
    assert "Resuming after epoch 2" in resumed.stdout
    assert a.returncode == 0, a
    assert len(resumed.history()) == len(a.history()) == epochs
    assert resumed.history() == a.history()
    for x, y in zip(a.weights(), resumed.weights(), strict=True):
        assert np.array_equal(x, y)


@pytest.mark.slow  # the module's real processes train for about a minute
@pytest.mark.parametrize("prefix", ["", "fast_"])
def test_a_resumed_run_reports_its_training_time_over_all_sessions(
    runs: dict[str, Run], prefix: str
) -> None:
    resumed = runs[prefix + "resumed"]
    records = json.loads((resumed.out / "history.json").read_text())["records"]
    metrics = resumed.metrics()
    assert metrics["resumed_after_epoch"] == 2
    assert metrics["train_seconds"] == pytest.approx(sum(r["seconds"] for r in records))
    total, session = sum(r["seconds"] for r in records), sum(r["seconds"] for r in records[2:])
    line = next(line for line in resumed.stdout.splitlines() if line.startswith("Test accuracy"))
    assert f"{len(records)} epochs, {total:.0f} s of training in all sessions" in line, line
    assert f"({session:.0f} s in this one, which resumed after epoch 2)" in line, line
    fresh = next(line for line in runs["a"].stdout.splitlines() if line.startswith("Test accuracy"))
    assert "all sessions" not in fresh and runs["a"].metrics()["resumed_after_epoch"] == 0


@pytest.mark.slow  # the module's real processes train for about a minute
def test_outputs_leave_no_temporary_files(runs: dict[str, Run]) -> None:
    for name, epochs, suffix in (("a", EPOCHS, ".weights.h5"), ("resumed", EPOCHS, ".weights.h5"),
                                 ("fast", FAST_EPOCHS, ".npz"),
                                 ("fast_resumed", FAST_EPOCHS, ".npz")):
        out = runs[name].out
        names = sorted(p.name for p in out.iterdir())
        assert {"model.keras", "history.json", "history.csv", "metrics.json", "checkpoint"} <= set(names)
        assert not [n for n in names if n.startswith(".")], names
        weights = sorted(p.name for p in (out / "checkpoint").iterdir())
        assert weights == [f"epoch-{epochs:04d}{suffix}", "state.json"]
        assert runs[name].metrics()["epochs_trained"] == epochs


@pytest.mark.slow  # the module's real processes train for about a minute
def test_no_tensorflow_start_up_lines_on_stderr(runs: dict[str, Run]) -> None:
    for name, run in runs.items():
        assert not LOG_LINE.search(run.stderr), f"{name}:\n{run.stderr[:2000]}"


def test_ctrl_c_after_training_does_not_claim_nothing_ran(
    folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Ctrl-C while evaluating or writing: the finished epochs are kept and resumable."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate", interrupted)
    out = tmp_path / "out"
    code, err = _main(["train", "--data-dir", folder, "--out", out, "--epochs", 1,
                       "--batch-size", 8, "--quiet"], capsys)
    assert code == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err and "before training" not in err
    assert "resume" in err and str(out / "checkpoint") in err
    assert _epochs_done(out) == 1


# --------------------------------------------------------------------------- reproducibility


@pytest.mark.slow  # the module's real processes train for about a minute
def test_same_seed_gives_bit_identical_runs(runs: dict[str, Run]) -> None:
    a, b = runs["a"], runs["b"]
    assert a.returncode == 0 and b.returncode == 0, (a, b)
    assert a.history() == b.history()
    assert len(a.history()) == EPOCHS and all(np.isfinite(r["loss"]) for r in a.history())
    for x, y in zip(a.weights(), b.weights(), strict=True):
        assert np.array_equal(x, y)


# --------------------------------------------------------------------------- progress


def _on_terminal(args: list, script: str | None = None, delay: float | None = None) -> str:
    """Run the command line with its stdout on a pseudo-terminal; return what it showed."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(_command(args, script, delay), stdout=slave,
                                stderr=subprocess.DEVNULL, env=_env())
    finally:
        os.close(slave)
    shown = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.wait(timeout=DEADLINE) == 0, shown.decode(errors="replace")[-3000:]
    return shown.decode(errors="replace")


@pytest.fixture(scope="module")
def terminal(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What a terminal showed for two epochs of seed, of fast, and of seed with --quiet."""
    base = tmp_path_factory.mktemp("terminal")
    seed = ["train", "--data-dir", folder, "--epochs", 2, "--batch-size", 8]
    jobs = {
        "seed": (seed + ["--out", base / "seed"], None, None),
        "fast": (["train", "--model", "fast", "--data-dir", folder, "--epochs", 2,
                  "--batch-size", 8, "--out", base / "fast"], FAST_CLI, 0),
        "quiet": (seed + ["--out", base / "quiet", "--quiet"], None, None),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(_on_terminal, *job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.slow  # three real trainings
def test_a_terminal_shows_progress_within_each_epoch(terminal: dict[str, str]) -> None:
    seed_steps, fast_steps = math.ceil(70 / 8), 70 // 8
    for name, steps in (("seed", seed_steps), ("fast", fast_steps)):
        shown = terminal[name]
        assert "\b" in shown, f"{name}: no progress bar redrawn\n{shown[-2000:]}"
        assert f"{steps}/{steps}" in shown and f"1/{steps}" in shown, shown[-2000:]
    assert not LOG_LINE.search(terminal["seed"])


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_both_loops_draw_a_progress_bar_on_a_terminal(folder: Path, tmp_path: Path, loop: str,
                                                      monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # capsys' stdout, as a terminal
    code = cli.main(["train", "--data-dir", str(folder), "--out", str(tmp_path), "--epochs", "1",
                     "--batch-size", "8", "--loop", loop])
    out = capsys.readouterr().out
    assert code == 0
    assert "\b" in out and "9/9" in out, out[-2000:]
    assert "val_accuracy:" in out.rsplit("9/9", 1)[-1]  # the epoch's figures end the bar


@pytest.mark.slow  # the module's real processes train for about a minute
def test_quiet_or_no_terminal_gives_one_line_an_epoch(runs: dict[str, Run],
                                                      terminal: dict[str, str]) -> None:
    quiet = terminal["quiet"]
    assert "\b" not in quiet
    assert [line.split("  ")[0] for line in quiet.splitlines() if line.startswith("Epoch ")] == [
        "Epoch 1/2", "Epoch 2/2"]
    for name, epochs, start in (("a", EPOCHS, "Epoch "), ("fast", FAST_EPOCHS, "epoch ")):
        stdout = runs[name].stdout
        assert "\b" not in stdout and "\r" not in stdout
        assert len([line for line in stdout.splitlines() if line.startswith(start)]) == epochs


# --------------------------------------------------------------------------- refusals


def _one_error(stderr: str) -> str:
    """Check stderr holds one ``error:`` line and no traceback; return that line."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.slow  # the module's real processes train for about a minute
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


# --------------------------------------------------------------------------- evaluate


def _tiny_model(path: Path) -> Path:
    """A seeded 32x32x3 -> 10 logits model, saved as ``path`` (a .keras file)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(4, 3, strides=4, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, name="logits"),
    ])
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("model") / "model.keras")


def test_evaluate_refuses_a_missing_model(folder: Path, tmp_path: Path, capsys) -> None:
    code, err = _main(["evaluate", "--model-path", tmp_path / "none.keras", "--data-dir", folder], capsys)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_error(err)
    assert "none.keras does not exist" in line and "train one with" in line


def test_evaluate_keeps_the_training_runs_files(folder: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    model = _tiny_model(run / "model.keras")
    kept = {name: f"the training run's {name}" for name in
            ("metrics.json", "confusion.png", "mistakes.png", "curves.png")}
    for name, text in kept.items():
        (run / name).write_text(text)
    code = cli.main(["evaluate", "--model-path", str(model), "--data-dir", str(folder)])
    out = capsys.readouterr().out
    assert code == 0
    for name, text in kept.items():
        assert (run / name).read_text() == text, name
    written = json.loads((run / "evaluation.json").read_text())
    assert written["tta"] == "none" and written["test_examples"] == 20
    assert written["model_path"] == str(model)
    for name in ("evaluation.json", "evaluation-confusion.png"):
        assert f"  {run / name}\n" in out  # says where
    with Image.open(run / "evaluation-confusion.png") as png:
        assert png.info["dpi"] == pytest.approx((plots.DPI, plots.DPI), abs=0.1)  # pixels per metre


@pytest.mark.slow  # the module's real processes train for about a minute
def test_evaluate_scores_a_saved_model_with_tta(runs: dict[str, Run], folder: Path, tmp_path: Path,
                                                capsys) -> None:
    model = runs["a"].out / "model.keras"
    trained = (runs["a"].out / "metrics.json").read_text()
    results = {}
    for tta in ([], ["--tta"], ["--tta", "flip_shift"]):
        out = tmp_path / f"out{len(tta)}"
        code, err = _main(["evaluate", "--model-path", model, "--data-dir", folder,
                           "--out", out, *tta], capsys)
        assert code == 0, err
        metrics = json.loads((out / "evaluation.json").read_text())
        results[metrics["tta"]] = metrics["test_accuracy"]
        assert not (out / "metrics.json").exists()
    assert list(results) == ["none", "flip", "flip_shift"]
    assert (runs["a"].out / "metrics.json").read_text() == trained
    # The same model, the same images.
    assert results["none"] == json.loads(trained)["test_accuracy"]


# --------------------------------------------------------------------------- fast


@pytest.fixture
def narrow_fast(monkeypatch) -> None:
    """Make ``--model fast`` build its net :data:`FAST_WIDTHS` wide, in this process."""
    monkeypatch.setattr(recipes, "FastHyperparameters",
                        functools.partial(recipes.FastHyperparameters, widths=FAST_WIDTHS))


def test_fast_recipe_through_the_command_line(folder: Path, tmp_path: Path, monkeypatch,
                                              capsys) -> None:
    drawn = []
    monkeypatch.setattr(plots, "training_curves",
                        lambda history, f=plots.training_curves: drawn.append(f(history)) or drawn[-1])
    argv = ["train", "--model", "fast", "--epochs", "1", "--batch-size", "30",
            "--data-dir", str(folder), "--out", str(tmp_path), "--quiet"]
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 0
    assert "on 20 images after 1 epoch, " in out  # not "1 epochs"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == "fast" and metrics["epochs_trained"] == 1
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["summary"]["steps"] == 70 // 30 and len(history["records"]) == 1
    assert _epochs_done(tmp_path) == 1 and (tmp_path / "checkpoint" / "epoch-0001.npz").exists()
    reloaded = keras.models.load_model(tmp_path / "model.keras")  # safe mode: no lambdas
    assert reloaded.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).shape == (1, 10)
    # The one epoch's points are drawn, and the figure is saved at the book's resolution.
    (curves,) = drawn
    for ax in curves.axes:
        points = [line for line in ax.lines if line.get_marker() == "o"]
        assert points and all(list(line.get_xdata()) == [1] for line in points)
    with Image.open(tmp_path / "curves.png") as png:
        assert png.width == round(plots.PAGE_WIDTH * plots.DPI)


def test_fast_resumes_refuses_another_schedule_and_honours_no_resume(
    folder: Path, tmp_path: Path, narrow_fast, capsys
) -> None:
    argv = ["train", "--model", "fast", "--batch-size", "16", "--data-dir", str(folder),
            "--out", str(tmp_path), "--quiet"]
    assert cli.main([*argv, "--epochs", "1"]) == 0
    first = json.loads((tmp_path / "history.json").read_text())["records"]
    capsys.readouterr()
    # The same command again: the finished run is resumed after its last epoch.
    assert cli.main([*argv, "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Resuming after epoch 1" in out and "epoch  1" not in out
    assert json.loads((tmp_path / "history.json").read_text())["records"] == first
    # More epochs change the recipe's schedule: not the same run.
    code, err = _main([*argv, "--epochs", "2"], capsys)
    assert code == cli.EXIT_BAD_INPUT
    assert "holds a checkpoint of a different run" in _one_error(err) and "--no-resume" in err
    # --no-resume starts afresh and replaces the checkpoint.
    assert cli.main([*argv, "--epochs", "2", "--no-resume"]) == 0
    out = capsys.readouterr().out
    assert "Resuming" not in out and "epoch  2" in out
    assert _epochs_done(tmp_path) == 2
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == [
        "epoch-0002.npz", "state.json"]


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--lr", "0.1"], "--lr"), (["--augment"], "--augment"),
     (["--early-stopping", "2"], "--early-stopping"), (["--loop", "custom"], "--loop"),
     (["--loop", "fit"], "--loop"), (["--head", "l2"], "--head"), (["--base", "3"], "--base"),
     (["--strategy", "mirrored"], "--strategy"), (["--scale-lr"], "--scale-lr")],
)
def test_fast_recipe_refuses_what_it_does_not_use(folder: Path, tmp_path: Path, args: list[str],
                                                  option: str, capsys) -> None:
    code, err = _main(["train", "--model", "fast", *args, "--data-dir", folder,
                       "--out", tmp_path / "out"], capsys)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_error(err)
    assert f"--model fast takes no {option} (" in line and "leave it out" in line
    assert not (tmp_path / "out").exists()


def test_fast_recipe_names_every_refused_option_at_once(folder: Path, tmp_path: Path,
                                                        capsys) -> None:
    code, err = _main(["train", "--model", "fast", "--lr", "0.1", "--augment", "--head", "logits",
                       "--data-dir", folder, "--out", tmp_path], capsys)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_error(err)
    assert "takes no --lr or --augment (" in line and "--head" not in line  # logits is its head
    assert "leave them out" in line


# --------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One readable file per kind: PNG, JPEG, RGBA, grayscale, palette, odd-sized."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)

    def pixels(h: int, w: int, c: int = 3) -> np.ndarray:
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)

    files = {
        "png": (Image.fromarray(pixels(32, 32)), "photo.png"),
        "jpeg": (Image.fromarray(pixels(48, 64)), "photo.jpg"),
        "rgba": (Image.fromarray(pixels(40, 40, 4), "RGBA"), "cutout.png"),
        "grayscale": (Image.fromarray(pixels(30, 30, 1)[..., 0], "L"), "grey.png"),
        "palette": (Image.fromarray(pixels(36, 20)).convert("P", palette=Image.Palette.ADAPTIVE),
                    "palette.png"),
        "odd-sized": (Image.fromarray(pixels(7, 301)), "strip 7x301.png"),
    }
    for image, name in files.values():
        image.save(root / name)
    return {kind: root / name for kind, (_, name) in files.items()}


def _predict(argv: list, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(["predict", *[str(a) for a in argv]])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expected(model_path: Path, image: Path, k: int) -> list[tuple[str, float]]:
    model = keras.models.load_model(model_path)
    return predict.top_k(predict.image_probabilities(model, image), k)


def test_predict_json_for_every_kind_of_image(tiny_model: Path, images: dict[str, Path],
                                              capsys) -> None:
    paths = list(images.values())
    code, out, err = _predict(["--model-path", tiny_model, *paths, "--json"], capsys)
    assert code == 0, err
    assert "error" not in err and "Traceback" not in err
    document = json.loads(out)  # stdout holds exactly one JSON document
    assert [entry["image"] for entry in document] == [str(p) for p in paths]
    model = keras.models.load_model(tiny_model)
    for entry, path in zip(document, paths):
        assert set(entry) == {"image", "top"}
        expected = predict.top_k(predict.image_probabilities(model, path), 3)
        assert [t["class"] for t in entry["top"]] == [name for name, _ in expected]
        assert [t["probability"] for t in entry["top"]] == pytest.approx([p for _, p in expected])
        probabilities = [t["probability"] for t in entry["top"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(isinstance(p, float) for p in probabilities)


def test_predict_top_k_and_all_ten_sum_to_one(tiny_model: Path, images: dict[str, Path],
                                              capsys) -> None:
    code, out, _ = _predict(["--model-path", tiny_model, images["rgba"], "--top", "10", "--json"],
                            capsys)
    assert code == 0
    (entry,) = json.loads(out)
    assert len(entry["top"]) == 10  # a logits model: the softmax makes them sum to one
    assert sum(t["probability"] for t in entry["top"]) == pytest.approx(1.0)
    assert {t["class"] for t in entry["top"]} == set(sources.CLASS_NAMES)
    code, out, _ = _predict(["--model-path", tiny_model, images["png"], "--top", "50", "--json"],
                            capsys)
    assert code == 0 and len(json.loads(out)[0]["top"]) == 10
    code, _, err = _predict(["--model-path", tiny_model, images["png"], "--top", "0"], capsys)
    assert code == cli.EXIT_BAD_INPUT and "--top: must be at least 1" in err


def test_predict_prints_a_readable_block_per_image(tiny_model: Path, images: dict[str, Path],
                                                   capsys) -> None:
    chosen = [images["jpeg"], images["grayscale"]]
    code, out, _ = _predict(["--model-path", tiny_model, *chosen, "--top", "2"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 6
    for block, path in zip((lines[:3], lines[3:]), chosen):
        assert block[0] == f"{path}:"
        for line, (name, probability) in zip(block[1:], _expected(tiny_model, path, 2)):
            assert line.split() == [name, f"{probability:.1%}"]


def _bad_images(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Unreadable inputs -> (path, what the error must say)."""
    (root / "a folder").mkdir()
    (root / "notes.png").write_text("not an image at all")
    (root / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    raw = good.read_bytes()
    (root / "truncated.png").write_bytes(raw[: len(raw) // 2])
    return {
        "missing": (root / "nowhere.png", "no such file"),
        "directory": (root / "a folder", "is a directory"),
        "not an image": (root / "notes.png", "is not an image file"),
        "random bytes": (root / "noise.jpg", "is not an image file"),
        "corrupt": (root / "truncated.png", "corrupt or truncated"),
    }


def test_predict_reports_each_bad_image_and_still_classifies_the_rest(
    tiny_model: Path, images: dict[str, Path], tmp_path: Path, capsys
) -> None:
    bad = _bad_images(tmp_path, images["png"])
    for case, (path, fragment) in bad.items():  # one bad file alone
        code, out, err = _predict(["--model-path", tiny_model, path], capsys)
        assert code == cli.EXIT_BAD_INPUT, case
        line = _one_error(err)
        assert str(path) in line and fragment in line, (case, line)
        assert out == ""
    mixed = [images["png"], *(p for p, _ in bad.values()), images["palette"]]
    for json_flag in ([], ["--json"]):
        code, out, err = _predict(["--model-path", tiny_model, *mixed, *json_flag], capsys)
        assert code == cli.EXIT_BAD_INPUT
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == len(bad) == len(err.splitlines())
        for line, (path, fragment) in zip(errors, bad.values()):
            assert str(path) in line and fragment in line
        if json_flag:
            assert [e["image"] for e in json.loads(out)] == [str(images["png"]), str(images["palette"])]
        else:
            assert f"{images['png']}:" in out and f"{images['palette']}:" in out
            assert len(out.splitlines()) == 8


def test_predict_refuses_a_bad_model_path(images: dict[str, Path], tmp_path: Path, capsys) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "text.keras").write_text("not a model")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    cases = {
        tmp_path / "none.keras": "does not exist",
        tmp_path / "run": "is a directory",
        tmp_path / "text.keras": "cannot be loaded as a Keras model",
        tmp_path / "weights.h5": "cannot be loaded as a Keras model",
    }
    for path, fragment in cases.items():
        for json_flag in ([], ["--json"]):
            code, out, err = _predict(["--model-path", path, images["png"], *json_flag], capsys)
            assert code == cli.EXIT_BAD_INPUT
            line = _one_error(err)
            assert str(path) in line and fragment in line, line
            assert out == ""


@pytest.mark.slow  # three starts of TensorFlow
def test_predict_in_a_real_process_shows_no_tensorflow_notices(
    tiny_model: Path, images: dict[str, Path]
) -> None:
    argv = ["predict", "--model-path", tiny_model, images["jpeg"], "--json"]
    quiet = subprocess.run(_command(argv), capture_output=True, text=True, env=_env(),
                           timeout=DEADLINE)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)[0]["image"] == str(images["jpeg"])
    assert not LOG_LINE.search(quiet.stderr), quiet.stderr
    verbose = subprocess.run(_command([*argv, "--verbose-tf"]), capture_output=True, text=True,
                             env=_env(), timeout=DEADLINE)
    assert verbose.returncode == 0 and json.loads(verbose.stdout) == json.loads(quiet.stdout)
    plain = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True,
                           text=True, env={**_env(), "TF_CPP_MIN_LOG_LEVEL": "0"}, timeout=DEADLINE)
    if LOG_LINE.search(plain.stderr):  # this TensorFlow prints notices at start-up
        assert LOG_LINE.search(verbose.stderr), "--verbose-tf hid TensorFlow's lines"
