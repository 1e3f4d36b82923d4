"""bench/fast_recipe.py: with --checkpoint-dir a run started again goes on from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("fast_recipe") as module:
        yield module


def test_a_second_run_resumes_from_the_checkpoint(bench, tiny_folder: Path,
                                                   tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "run"
    argv = ["--data-dir", str(tiny_folder), "--epochs", "2", "--batch-size", "40",
            "--widths", "8,8,8", "--checkpoint-dir", str(checkpoint)]
    assert bench.main([*argv, "--out", str(tmp_path / "first.json")]) == 0
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["epochs_resumed"] == 0
    assert json.loads((checkpoint / "checkpoint" / "state.json").read_text())["epochs_done"] == 2

    capsys.readouterr()
    # The same command again finds both epochs done: it trains nothing and says so.
    assert bench.main([*argv, "--out", str(tmp_path / "second.json")]) == 0
    second = json.loads((tmp_path / "second.json").read_text())
    assert "Resum" in capsys.readouterr().out
    assert second["epochs_resumed"] == 2
    assert second["history"]["records"] == first["history"]["records"]
    recorded = second["args"]["checkpoint_dir"]
    assert recorded and not Path(recorded).is_absolute()
