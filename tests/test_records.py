"""What a run leaves behind (chapter 6): History and atomic files, cifar_tutorial.records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_tutorial import models
from cifar_tutorial.records import History, atomic_save, atomic_write_text, check_output_folder
from tests.fixtures import history_records


def _history() -> History:
    return History(history_records([0.1, 0.2, 0.3], [0.09, 0.18, 0.27], [2.1, 1.05, 0.7]))


def test_history_reads_metrics_by_name() -> None:
    h = _history()
    assert len(h) == 3 and h["epoch"] == [1, 2, 3]
    assert h["accuracy"] == [0.1, 0.2, 0.3] and h.last("val_loss") == 0.7
    assert h.keys == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert History().keys == [] and len(History()) == 0


def test_history_roundtrip(tmp_path: Path) -> None:
    h = _history()
    h.stopped_early = True
    h.summary = {"train_seconds": 12.5, "accuracy": {"none": 0.5, "flip": 0.55}}
    json_path, csv_path = h.save(tmp_path)
    again = History.from_dict(json.loads(json_path.read_text()))
    assert again == h and again.stopped_early and again.summary["accuracy"]["flip"] == 0.55
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["epoch", "loss", "accuracy"] and len(lines) == 4
    assert [float(v) for v in lines[3].split(",")] == [h.records[2][k] for k in h.keys]


def test_history_without_summary_keeps_the_checkpoint_layout() -> None:
    # Checkpoints store to_dict(); a plain training run adds no key to them.
    assert set(_history().to_dict()) == {"records", "stopped_early"}
    assert History.from_dict({"records": []}) == History()


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_text_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch, failure) -> None:
    target = atomic_write_text(tmp_path / "history.json", '{"old": true}')

    def fail(fd: int) -> None:  # the text is written but not yet on disk
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(failure)):
        atomic_write_text(target, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    assert target.read_text() == '{"old": true}'
    assert _leftovers(tmp_path, {"history.json"}) == []


def test_atomic_write_text_keeps_the_old_file_when_the_rename_fails(tmp_path: Path, monkeypatch) -> None:
    target = atomic_write_text(tmp_path / "metrics.json", "old")

    def fail(src, dst) -> None:
        raise PermissionError("no")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path, {"metrics.json"}) == []


def test_atomic_save_keeps_the_old_file_when_the_writer_fails_midway(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    atomic_save(lambda p: Path(p).write_bytes(b"old model"), target)

    def half_then_fail(path: str) -> None:
        with open(path, "wb") as f:
            f.write(b"half a mod")
            raise OSError("writer crashed")

    with pytest.raises(OSError, match="writer crashed"):
        atomic_save(half_then_fail, target)
    assert target.read_bytes() == b"old model"
    assert _leftovers(tmp_path, {"model.keras"}) == []
    atomic_save(lambda p: Path(p).write_bytes(b"new model"), target)
    assert target.read_bytes() == b"new model"
    assert _leftovers(tmp_path, {"model.keras"}) == []


def test_atomic_save_of_a_real_keras_model(tmp_path: Path) -> None:
    model = models.seed_cnn()
    path = atomic_save(model.save, tmp_path / "sub" / "model.keras")  # parents are made
    again = keras.models.load_model(path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _leftovers(path.parent, {"model.keras"}) == []


def test_check_output_folder(tmp_path: Path) -> None:
    made = check_output_folder(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(ValueError, match="cannot write to output folder") as info:
        check_output_folder(tmp_path / "file" / "out")
    assert "choose a folder you can write to" in str(info.value)


def test_portable_paths_hold_no_absolute_path(tmp_path) -> None:
    from cifar_tutorial.records import portable_argv, portable_path

    data = tmp_path / "shared" / "data"
    start = tmp_path / "project"
    assert portable_path(data, start) == os.path.join("..", "shared", "data")
    argv = ["bench/x.py", "--data-dir", str(data), f"--out={start / 'r.json'}", "--seed", "0"]
    assert portable_argv(argv, start) == [
        "bench/x.py", "--data-dir", os.path.join("..", "shared", "data"), "--out=r.json",
        "--seed", "0"]
