"""What a run leaves behind (chapter 7): History and atomic files, cifar_tutorial.records."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from cifar_tutorial import models, records
from cifar_tutorial.errors import OutputError
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


@pytest.mark.parametrize(("failure", "raised"), [
    (OSError(errno.ENOSPC, "No space left on device"), OutputError),
    (KeyboardInterrupt(), KeyboardInterrupt),
])
def test_atomic_write_text_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch, failure,
                                                                 raised) -> None:
    target = atomic_write_text(tmp_path / "history.json", '{"old": true}')

    def fail(fd: int) -> None:  # the text is written but not yet on disk
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(raised) as info:
        atomic_write_text(target, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    if raised is OutputError:  # the path, the cause in words, what to do
        assert str(info.value).startswith(f"cannot write {target} (No space left on device); "
                                          "free some space")
    assert target.read_text() == '{"old": true}'
    assert _leftovers(tmp_path, {"history.json"}) == []


def test_atomic_write_text_keeps_the_old_file_when_the_rename_fails(tmp_path: Path, monkeypatch) -> None:
    target = atomic_write_text(tmp_path / "metrics.json", "old")

    def fail(src, dst) -> None:
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputError, match=r"\(Permission denied\); make the folder writable"):
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

    with pytest.raises(OutputError, match="writer crashed"):
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
    with pytest.raises(OutputError, match="cannot write to output folder") as info:
        check_output_folder(tmp_path / "file" / "out")
    assert "choose a folder you can write to" in str(info.value)


def test_atomic_save_refuses_a_model_that_cannot_fit_before_writing(tmp_path: Path, monkeypatch) -> None:
    model = models.seed_cnn()
    needed = sum(w.nbytes for w in model.get_weights())
    free = needed // 2
    monkeypatch.setattr(records.shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=needed, used=needed - free, free=free))
    calls = []
    with pytest.raises(OutputError, match=r"MB needed, .* MB free on its disk") as info:
        atomic_save(lambda p: calls.append(p), tmp_path / "model.keras", size_hint=needed)
    assert calls == [] and str(tmp_path / "model.keras") in str(info.value)
    # A Keras model's own save is sized from its weights without a hint.
    with pytest.raises(OutputError, match="MB needed"):
        atomic_save(model.save_weights, tmp_path / "epoch-0001.weights.h5")
    assert list(tmp_path.iterdir()) == []


def test_strict_json_writes_null_for_missing_values(tmp_path: Path) -> None:
    value = {"loss": math.nan, "top": (np.float32(0.5), math.inf), 3: np.arange(2), "ok": True}
    text = records.to_json(value)
    assert json.loads(text, parse_constant=_refuse) == {
        "loss": None, "top": [0.5, None], "3": [0, 1], "ok": True}
    path = records.atomic_write_json(tmp_path / "x.json", value)
    assert json.loads(path.read_text(), parse_constant=_refuse)["loss"] is None


def test_history_with_missing_values_is_strict_json_and_reads_back_as_nan(tmp_path: Path) -> None:
    h = History(history_records([0.1, 0.2], [math.nan, math.nan], [2.1, math.nan]),
                summary={"accuracy": {"none": math.nan}})
    json_path, _ = h.save(tmp_path)
    saved = json.loads(json_path.read_text(), parse_constant=_refuse)
    assert saved["records"][0]["val_accuracy"] is None and saved["records"][0]["val_loss"] == 2.1
    assert saved["summary"]["accuracy"]["none"] is None
    again = History.from_dict(saved)
    assert math.isnan(again.records[1]["val_loss"]) and again.records[0]["val_loss"] == 2.1
    assert again.records[1]["accuracy"] == 0.2


def _refuse(token: str) -> None:
    raise ValueError(f"non-standard JSON token {token}")

