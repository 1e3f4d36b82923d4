"""Faults a long run meets, through the command line: a full or read-only disk, two
runs on one folder, a lock left by a killed run, a bug, non-standard JSON.

Each fault must end ``train`` with one ``error:`` line naming the cause and exit code
2 (a bug: its traceback and exit code 1), keep the last finished epoch, and the same
command run again must finish the run. The tests run offline on a tiny image folder;
those that need a small or read-only disk mount a tmpfs, and skip where mounting is
not allowed.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cifar_tutorial import cli, errors, evaluate, predict, records, sources
from tests.fixtures import make_image_folder
from tests.test_cli import FAST_WIDTHS, _env, _epochs_done, _main, _one_error


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 classes x 8 training and 2 test images (PNG): 70 to train, 10 to validate."""
    return make_image_folder(tmp_path_factory.mktemp("faults") / "cifar", 8, 2, fmt="png")


def _seed_args(folder: Path, out: Path, epochs: int = 2) -> list:
    return ["train", "--data-dir", folder, "--out", out, "--epochs", epochs,
            "--batch-size", 8, "--quiet"]


def _rerun_finishes(argv: list, capsys, resumed_after: int) -> None:
    """The same command again resumes after ``resumed_after`` epochs and ends the run."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"Resuming after epoch {resumed_after} " in captured.out
    out = Path(argv[argv.index("--out") + 1])
    for name in ("model.keras", "history.json", "history.csv", "metrics.json", "curves.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no lock, no temp file


# --------------------------------------------------------------------------- errors by kind


def test_every_error_the_user_can_fix_has_one_base() -> None:
    user_errors = [cli.UsageError, sources.DataError, predict.ImageError, predict.ModelError,
                   errors.CheckpointError, errors.OutputError, errors.RunLocked,
                   errors.TrainingError, errors.TrainingDiverged]
    for kind in user_errors:
        assert issubclass(kind, errors.CifarTutorialError) and not issubclass(kind, ValueError)
        assert kind.exit_code == (3 if kind is errors.TrainingDiverged else 2)
    # Ctrl-C stays a KeyboardInterrupt: ``except Exception`` cannot swallow it.
    assert issubclass(errors.TrainingInterrupted, KeyboardInterrupt)
    assert not issubclass(errors.TrainingInterrupted, Exception)


def test_a_bug_shows_its_traceback_and_exits_1(folder: Path, tmp_path: Path, monkeypatch,
                                                capsys) -> None:
    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")  # as NumPy says

    monkeypatch.setattr(evaluate, "evaluate", broken)
    argv = _seed_args(folder, tmp_path / "out")
    code, err = _main(argv, capsys)
    assert code == cli.EXIT_BUG == 1
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.rstrip().splitlines()[-1].startswith("internal error: this is a bug")
    assert "ValueError: operands could not be broadcast together" in err
    assert _epochs_done(tmp_path / "out") == 2  # the training it did is kept
    monkeypatch.undo()
    _rerun_finishes(argv, capsys, resumed_after=2)


def test_a_batch_larger_than_the_data_is_the_users_error(folder: Path, tmp_path: Path,
                                                        capsys) -> None:
    code, err = _main([*_seed_args(folder, tmp_path / "out"), "--batch-size", 71], capsys)
    assert code == 2 and "larger than the training set" in _one_error(err)


# --------------------------------------------------------------------------- a full disk


def _full_disk_at(monkeypatch, name: str) -> list[Path]:
    """Make the first write of a file called ``name`` fail as on a full disk."""
    real_replace, failed = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name and not failed:
            failed.append(Path(dst))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return failed


@pytest.mark.parametrize("name", ["model.keras", "history.json", "metrics.json", "curves.png"])
def test_a_full_disk_while_writing_the_results(folder: Path, tmp_path: Path, monkeypatch,
                                               capsys, name: str) -> None:
    out = tmp_path / "out"
    argv = _seed_args(folder, out)
    failed = _full_disk_at(monkeypatch, name)
    code, err = _main(argv, capsys)
    assert failed == [out / name]
    assert code == 2
    line = _one_error(err)
    assert line.startswith(f"error: cannot write {out / name} (No space left on device); "
                           "free some space")
    assert "run the same command again" in line
    assert not (out / name).exists() and _epochs_done(out) == 2
    monkeypatch.undo()
    _rerun_finishes(argv, capsys, resumed_after=2)


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_one_before(
    folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    argv = _seed_args(folder, out)
    failed = _full_disk_at(monkeypatch, "epoch-0002.weights.h5")
    code, err = _main(argv, capsys)
    assert code == 2 and failed
    assert "(No space left on device)" in _one_error(err)
    assert _epochs_done(out) == 1
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "epoch-0001.weights.h5", "state.json"]
    monkeypatch.undo()
    _rerun_finishes(argv, capsys, resumed_after=1)


@contextmanager
def _tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where`` (skip the test where that is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]),
                              "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(where)], check=True)


NO_SPACE_CHECK = """
from cifar_tutorial import records
from cifar_tutorial.cli import main

records._check_space = lambda *args: None  # h5py itself meets the full disk
raise SystemExit(main())
"""
"""``python -m cifar_tutorial`` without the free-space check before each write."""


@pytest.mark.slow  # two starts of TensorFlow
@pytest.mark.parametrize("check", ["checked", "unchecked"])
def test_a_small_real_disk_fills_up_at_the_second_checkpoint(
    folder: Path, tmp_path: Path, check: str
) -> None:
    """A 1.8 MB tmpfs holds one checkpoint of the seed CNN (1 MB), not two.

    ``checked``: the free-space check refuses the second before writing it;
    ``unchecked``: h5py runs out of space in the middle of writing it, which must
    not end in a traceback or a crash either.
    """
    with _tmpfs(tmp_path / "disk", "1800k") as disk:
        out = disk / "run"
        args = [str(a) for a in _seed_args(folder, out)]
        head = [sys.executable, "-m", "cifar_tutorial"] if check == "checked" else [
            sys.executable, "-c", NO_SPACE_CHECK]
        full = subprocess.run(head + args, capture_output=True, text=True, env=_env(),
                              timeout=600)
        assert full.returncode == 2, full.stderr[-3000:]
        line = _one_error(full.stderr)
        assert "Exception ignored" not in full.stderr and "Segmentation" not in full.stderr
        assert line.startswith(f"error: cannot write {out / 'checkpoint' / 'epoch-0002.weights.h5'}")
        assert ("MB needed" in line) if check == "checked" else ("No space left on device" in line)
        assert _epochs_done(out) == 1
        assert not [p for p in (out / "checkpoint").iterdir() if p.name.startswith(".")]
        _remount(disk, "size=16m")
        again = subprocess.run([sys.executable, "-m", "cifar_tutorial", *args],
                               capture_output=True, text=True, env=_env(), timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "Resuming after epoch 1 " in again.stdout
        assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 2


# --------------------------------------------------------------------------- a read-only disk


@contextmanager
def _read_only(folder: Path) -> Iterator[Callable[[], None]]:
    """Make ``folder`` read-only; yield the function that makes it writable again.

    As root, permissions do not stop writes: a read-only tmpfs is mounted there.
    """
    if os.geteuid() != 0:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        try:
            yield lambda: folder.chmod(0o755)
        finally:
            folder.chmod(0o755)
        return
    with _tmpfs(folder, "16m", "ro") as mounted:
        yield lambda: _remount(mounted, "rw")


def test_a_read_only_output_folder_is_refused_at_once(folder: Path, tmp_path: Path,
                                                      capsys) -> None:
    out = tmp_path / "out"
    argv = _seed_args(folder, out)
    with _read_only(out) as make_writable:
        start = time.perf_counter()
        code, err = _main(argv, capsys)
        assert code == 2 and time.perf_counter() - start < 10
        line = _one_error(err)
        assert f"cannot write to output folder {out}" in line and "--out" in line
        assert "(Read-only file system)" in line or "(Permission denied)" in line
        make_writable()
        code, err = _main(argv, capsys)
        assert code == 0, err
        assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 2


# --------------------------------------------------------------------------- one run per folder


HOLDER = """
import sys
from cifar_tutorial.records import RunLock

with RunLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""
"""A process that holds a folder's lock until its stdin closes."""


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_a_held_folder_is_refused_at_once(folder: Path, tmp_path: Path,
                                                          capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = _holder(out)
    try:
        start = time.perf_counter()
        code, err = _main(_seed_args(folder, out), capsys)
        assert code == 2 and time.perf_counter() - start < 10
        line = _one_error(err)
        assert line == (f"error: {out} is in use by another run (process {holder.pid}); wait "
                        "for it to end or stop it, or choose another output folder")
        assert not (out / "checkpoint").exists()  # nothing of the other run was touched
        assert (out / records.LOCK_FILE).read_text().strip() == str(holder.pid)
    finally:
        holder.communicate("", timeout=30)
    assert not (out / records.LOCK_FILE).exists()
    code, err = _main(_seed_args(folder, out), capsys)
    assert code == 0, err


@pytest.mark.slow  # a real training in a second process
def test_two_train_commands_on_one_folder(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = _seed_args(folder, out, epochs=3)
    first = subprocess.Popen([sys.executable, "-m", "cifar_tutorial", *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 300
    while not (out / records.LOCK_FILE).exists() or not (out / records.LOCK_FILE).read_text():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    code, err = _main(args, capsys)
    assert first.poll() is None, "the first run must still be running"
    assert code == 2 and f"in use by another run (process {first.pid})" in _one_error(err)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 3
    assert not (out / records.LOCK_FILE).exists()


def test_a_lock_left_by_a_dead_process_blocks_nothing(folder: Path, tmp_path: Path,
                                                      capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)  # as a killed run leaves it
    holder.wait(timeout=30)
    holder.stdin.close()
    holder.stdout.close()
    assert (out / records.LOCK_FILE).read_text().strip() == str(holder.pid)
    code, err = _main(_seed_args(folder, out), capsys)
    assert code == 0, err
    assert not (out / records.LOCK_FILE).exists()


def test_the_lock_refuses_a_second_holder_in_one_process_too(tmp_path: Path) -> None:
    with records.RunLock(tmp_path):
        with pytest.raises(errors.RunLocked, match=f"process {os.getpid()}"):
            with records.RunLock(tmp_path):
                pass
    with records.RunLock(tmp_path):  # free again
        assert (tmp_path / records.LOCK_FILE).read_text() == f"{os.getpid()}\n"


# --------------------------------------------------------------------------- strict JSON


def _refuse(token: str) -> None:
    raise ValueError(f"non-standard JSON token {token}")


def _strict_json_files(out: Path) -> dict[str, object]:
    """Every JSON file under ``out``, read by a parser that refuses NaN and Infinity."""
    files = sorted(out.rglob("*.json"))
    return {str(p.relative_to(out)): json.loads(p.read_text(), parse_constant=_refuse)
            for p in files}


def test_every_file_of_a_seed_and_a_fast_run_is_strict_json(folder: Path, tmp_path: Path,
                                                            monkeypatch, capsys) -> None:
    import functools

    from cifar_tutorial import recipes

    seed, fast = tmp_path / "seed", tmp_path / "fast"
    assert cli.main([str(a) for a in _seed_args(folder, seed)]) == 0
    assert cli.main(["evaluate", "--model-path", str(seed / "model.keras"),
                     "--data-dir", str(folder)]) == 0
    monkeypatch.setattr(recipes, "FastHyperparameters",
                        functools.partial(recipes.FastHyperparameters, widths=FAST_WIDTHS))
    assert cli.main(["train", "--model", "fast", "--epochs", "1", "--batch-size", "30",
                     "--data-dir", str(folder), "--out", str(fast), "--quiet"]) == 0
    capsys.readouterr()
    seed_files, fast_files = _strict_json_files(seed), _strict_json_files(fast)
    assert {"history.json", "metrics.json", "evaluation.json",
            "checkpoint/state.json"} <= set(seed_files)
    assert {"history.json", "metrics.json", "checkpoint/state.json"} <= set(fast_files)
    # The fast recipe holds no validation data: its missing figures are null.
    assert fast_files["history.json"]["records"][0]["val_loss"] is None
    assert fast_files["metrics.json"]["val_loss"] is None
