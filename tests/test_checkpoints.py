"""Damaged checkpoints are never a traceback: cifar_tutorial.checkpoints.

A checkpoint file cut short by a crash, an empty one, one that is not HDF5 at all, a
``state.json`` that is not JSON or names a missing file: training falls back to the
newest epoch that reads, or stops with a :class:`~cifar_tutorial.errors.CheckpointError`
naming the file and the ways on; after it, the same run finishes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from cifar_tutorial import checkpoints, cli, errors, models, runtime, train
from tests.fixtures import make_image_folder

EPOCH_1 = "epoch-0001.weights.h5"


def _model() -> keras.Model:
    runtime.set_seed(0)
    return train.compile_model(models.seed_cnn(), learning_rate=3e-3)


def _train(data, out: Path, epochs: int, **kwargs) -> tuple[keras.Model, train.History]:
    model = _model()
    history = train.train(model, data, epochs=epochs, batch_size=16, out_dir=out, verbose=0,
                          **kwargs)
    return model, history


@pytest.fixture(scope="module")
def one_epoch(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder holding the checkpoint of a run's first epoch."""
    out = tmp_path_factory.mktemp("one_epoch")
    _train(tiny_data, out, 1)
    return out


@pytest.fixture
def out(one_epoch: Path, tmp_path: Path) -> Path:
    """A copy of :func:`one_epoch` for one test to damage."""
    return Path(shutil.copytree(one_epoch, tmp_path / "out"))


def _cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


@pytest.mark.parametrize(("damage", "name"), [
    (lambda p: _cut(p, 100), "truncated"),
    (lambda p: _cut(p, 0), "empty"),
    (lambda p: p.write_text("these are not the weights you are looking for\n"), "not HDF5"),
])
def test_an_unreadable_weights_file_is_named_then_the_run_finishes(
    tiny_data, out: Path, damage, name: str, capsys
) -> None:
    weights = out / "checkpoint" / EPOCH_1
    damage(weights)
    with pytest.raises(errors.CheckpointError) as info:
        _train(tiny_data, out, 2)
    message = str(info.value)
    assert str(weights) in message, name
    assert "delete" in message and "resume=False" in message and "--no-resume" in message
    assert weights.exists(), "nothing is deleted before the user is told"
    capsys.readouterr()
    _, history = _train(tiny_data, out, 2, resume=False)
    assert f"replaces {EPOCH_1} in {weights.parent}" in capsys.readouterr().out
    assert len(history) == 2
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epochs_done"] == 2
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "epoch-0002.weights.h5", "state.json"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("{\"epochs_done\": 1, \"weig", "state.json"),
    ("", "state.json"),
    ("[1, 2]", "state.json"),
    (None, "epoch-0007.weights.h5"),  # valid JSON naming a file that does not exist
])
def test_a_bad_state_file_is_named_then_the_run_finishes(
    tiny_data, out: Path, text: str | None, fragment: str
) -> None:
    state_path = out / "checkpoint" / "state.json"
    if text is None:
        state = json.loads(state_path.read_text())
        (out / "checkpoint" / EPOCH_1).unlink()
        text = json.dumps({**state, "weights": "epoch-0007.weights.h5"})
    state_path.write_text(text)
    with pytest.raises(errors.CheckpointError) as info:
        _train(tiny_data, out, 2)
    message = str(info.value)
    assert str(out / "checkpoint" / fragment) in message
    assert "delete" in message and "--no-resume" in message
    _, history = _train(tiny_data, out, 2, resume=False)
    assert len(history) == 2


def test_a_damaged_newest_epoch_falls_back_to_an_older_one_that_reads(
    tiny_data, out: Path, capsys
) -> None:
    folder = out / "checkpoint"
    kept = shutil.copy(folder / EPOCH_1, out / "kept.h5")
    _train(tiny_data, out, 2)  # replaces epoch 1 by epoch 2
    shutil.copy(kept, folder / EPOCH_1)  # an older epoch file left behind
    _cut(folder / "epoch-0002.weights.h5", 100)
    model = _model()
    history = train.train(model, tiny_data, epochs=3, batch_size=16, out_dir=out, verbose=1)
    said = capsys.readouterr().out
    assert "epoch-0002.weights.h5" in said and "resuming from epoch-0001" in said
    assert "Resuming after epoch 1" in said
    assert len(history) == 3 and history["epoch"] == [1, 2, 3]
    # Epochs 2 and 3 were trained again from epoch 1: the weights of a run never stopped.
    straight, _ = _train(tiny_data, None, 3)
    for a, b in zip(straight.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0003.weights.h5", "state.json"]


def test_a_write_that_fails_midway_leaves_the_previous_epoch_intact(tmp_path: Path) -> None:
    checkpoint = checkpoints.Checkpoint(tmp_path / "checkpoint")
    checkpoint.write_with(lambda p: Path(p).write_bytes(b"epoch one"),
                          {"epochs_done": 1, "history": {"records": []}}, suffix=".bin")

    def killed_midway(path: str) -> None:
        Path(path).write_bytes(b"half of epo")
        raise KeyboardInterrupt  # what a kill leaves: a partial file, never renamed

    with pytest.raises(KeyboardInterrupt):
        checkpoint.write_with(killed_midway, {"epochs_done": 2, "history": {"records": []}},
                              suffix=".bin")
    assert sorted(p.name for p in checkpoint.folder.iterdir()) == ["epoch-0001.bin", "state.json"]
    state = checkpoint.read()
    assert state["epochs_done"] == 1 and checkpoint.file(state).read_bytes() == b"epoch one"


def test_the_command_line_says_which_file_and_how_to_go_on(tmp_path: Path, capsys) -> None:
    folder = make_image_folder(tmp_path / "cifar", 4, 1, fmt="png")
    out = tmp_path / "out"

    def argv(epochs: int, *more: str) -> list[str]:
        return ["train", "--data-dir", str(folder), "--out", str(out), "--epochs", str(epochs),
                "--batch-size", "8", "--quiet", *more]

    assert cli.main(argv(1)) == 0
    _cut(out / "checkpoint" / EPOCH_1, 100)
    capsys.readouterr()
    assert cli.main(argv(2)) == errors.CheckpointError.exit_code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and EPOCH_1 in lines[0] and "--no-resume" in lines[0]
    assert cli.main(argv(2, "--no-resume")) == 0


def test_epochs_saved_reads_the_state_and_says_zero_when_it_cannot(tmp_path: Path) -> None:
    assert checkpoints.epochs_saved(tmp_path / "never-trained") == 0
    folder = tmp_path / "run" / checkpoints.CHECKPOINT_DIR
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps(
        {"epochs_done": 3, "weights": "epoch-0003.npz", "history": {"records": []}}))
    assert checkpoints.epochs_saved(tmp_path / "run") == 3
    (folder / "state.json").write_text("{not json")
    assert checkpoints.epochs_saved(tmp_path / "run") == 0
