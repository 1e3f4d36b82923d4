"""The helpers of bench/peer_airbench.py that need no PyTorch (its runs need .venv-peer)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "peer_airbench.py"


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("peer_airbench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loader_arrays_match_airbench_layout(peer) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 1, 2], dtype=np.int32)
    classes = [f"c{i}" for i in range(10)]
    arrays = peer.loader_arrays(images, labels, tuple(classes))
    assert arrays["images"].dtype == np.uint8 and arrays["images"].flags.c_contiguous
    np.testing.assert_array_equal(arrays["images"], images)
    assert arrays["labels"].dtype == np.int64  # the library's cross-entropy needs int64
    np.testing.assert_array_equal(arrays["labels"], labels)
    assert arrays["classes"] == classes
    first = peer.loader_arrays(images[:, ::-1], labels, classes, limit=4)
    np.testing.assert_array_equal(first["images"], images[:4, ::-1])
    assert first["images"].flags.c_contiguous
    np.testing.assert_array_equal(first["labels"], labels[:4])


@pytest.mark.parametrize(
    "images, labels, limit, words",
    [
        (np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64), None, "(n, 32, 32, 3)"),
        (np.zeros((2, 32, 32, 3), np.float32), np.zeros(2, np.int64), None, "uint8"),
        (np.zeros((2, 32, 32, 3), np.uint8), np.zeros(3, np.int64), None, "labels must be (2,)"),
        (np.zeros((2, 32, 32, 3), np.uint8), np.array([0.0, 1.0]), None, "integers"),
        (np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 10]), None, "[0, 10)"),
        (np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1]), 3, "limit must be in 1..2"),
    ],
)
def test_loader_arrays_refuses_what_airbench_cannot_read(peer, images, labels, limit, words) -> None:
    with pytest.raises(ValueError) as err:
        peer.loader_arrays(images, labels, [str(i) for i in range(10)], limit=limit)
    assert words in str(err.value)


def test_the_machine_is_described_with_its_matrix_extensions(peer) -> None:
    machine = peer.describe_machine(threads=2)
    assert machine["torch_threads"] == 2
    assert machine["matrix_extensions"] in ("AMX-BF16", "AVX512-BF16", "neither")
    assert machine["cpu_count"] >= 1 and machine["cpu_model"]


def test_epoch_rows_from_cumulative_library_timer(peer) -> None:
    table = [
        {"epoch": 0, "train_loss": 2.0, "train_acc": 0.3, "val_acc": 0.4, "tta_val_acc": None,
         "total_time_seconds": 10.0, "steps": 48, "final": False, "wall_s": 112.0, "cpu_s": 24.0},
        {"epoch": 1, "train_loss": 1.5, "train_acc": 0.5, "val_acc": 0.6, "tta_val_acc": None,
         "total_time_seconds": 18.0, "steps": 96, "final": False, "wall_s": 122.0, "cpu_s": 39.0},
        {"epoch": "eval", "train_loss": 1.5, "train_acc": 0.5, "val_acc": 0.6, "tta_val_acc": 0.65,
         "total_time_seconds": 21.0, "steps": 96, "final": True, "wall_s": 125.0, "cpu_s": 45.0},
    ]
    rows = peer.epoch_rows(table, start_wall=100.0, start_cpu=0.0, batch_size=1024)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["test_acc"] for r in rows] == [0.4, 0.6]
    assert [r["steps"] for r in rows] == [48, 48]
    assert rows[0]["train_time_s"] == pytest.approx(10.0)
    assert rows[1]["train_time_s"] == pytest.approx(8.0)
    assert rows[1]["images_per_s"] == pytest.approx(48 * 1024 / 8.0)
    assert rows[0]["cpu_per_wall"] == pytest.approx(2.0)
    assert rows[1]["cpu_per_wall"] == pytest.approx(1.5)


def test_results_are_written_whole_and_strict(peer, tmp_path: Path) -> None:
    out = tmp_path / "results" / "peer.json"
    peer.write_json(out, {"test_acc": {"0": np.float32(0.5)}, "loss": np.float32("nan")})
    assert json.loads(out.read_text()) == {"test_acc": {"0": 0.5}, "loss": None}
    assert [p.name for p in out.parent.iterdir()] == ["peer.json"]


def test_bad_command_lines_exit_2(peer, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        peer.main(["--data-dir", str(tmp_path), "--limit-train", "2048"])
    assert exit_info.value.code == 2
    assert "give --out outside bench/results/" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        peer.main(["--data-dir", str(tmp_path), "--limit-train", "100", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "at least 1024" in capsys.readouterr().err


def test_missing_data_folder_is_one_clear_error(peer, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(peer, "require_packages", lambda: None)  # the folder is read first
    out = tmp_path / "peer.json"
    code = peer.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: data folder") and "does not exist" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="PyTorch is installed here: the script would train")
def test_without_pytorch_says_how_to_install_it(peer, tiny_folder: Path, tmp_path: Path, capsys) -> None:
    code = peer.main(["--data-dir", str(tiny_folder), "--out", str(tmp_path / "peer.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "torch is not installed" in err and 'pip install -c constraints.txt -e ".[peer]"' in err
    assert not (tmp_path / "peer.json").exists()
