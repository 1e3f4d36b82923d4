"""bench/report.py: the benchmarks page's comparison tables come from bench/results/."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "chapters" / "benchmarks.md"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["report"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["report"]


JPEG_COPY = {"name": "cifar10-jpeg", "format": "jpeg", "original": False}
ORIGINAL = {"name": "cifar10", "format": "png", "original": True}


def _ours(path: Path, seed: int, accuracy: dict[str, float], data: dict = ORIGINAL) -> Path:
    records = [{"epoch": e, "test_accuracy": 0.5 + e / 10, "elapsed_seconds": 60.0 * e,
                "cpu_per_wall": 1.9} for e in (1, 2)]
    summary = {"epochs": 9.9, "batch_size": 512, "precision": "float32", "steps": 10,
               "train_seconds": 120.0, "images_per_s": 10 * 512 / 120, "test_accuracy": accuracy}
    path.write_text(json.dumps({"args": {"seed": seed}, "data": data,
                                "machine": {"matrix_extensions": "neither"},
                                "history": {"records": records, "summary": summary}}))
    return path


def _peer(path: Path, seed: int, accuracy: Sequence[float], data: dict = ORIGINAL) -> Path:
    per_epoch = [{"test_acc": 0.6, "train_time_s": 30.0}, {"test_acc": 0.7, "train_time_s": 30.0}]
    path.write_text(json.dumps({
        "seed": seed, "epochs": 9.9, "batch_size": 1024, "train_steps": 5, "train_time_s": 60.0,
        "images_per_s": 5 * 1024 / 60.0,
        "per_epoch": per_epoch, "test_acc": {str(i): a for i, a in enumerate(accuracy)},
        "data": data,
        "machine": {"matrix_extensions": "neither"}}))
    return path


def test_tables_and_gap_of_both_implementations(report, tmp_path: Path) -> None:
    _ours(tmp_path / "fast_recipe_9.9ep_seed0.json", 0, {"none": 0.90, "flip": 0.91, "flip_shift": 0.92})
    _ours(tmp_path / "fast_recipe_9.9ep_seed1.json", 1, {"none": 0.92, "flip": 0.93, "flip_shift": 0.94})
    _peer(tmp_path / "peer_airbench_seed0.json", 0, [0.91, 0.92, 0.935])
    _ours(tmp_path / "fast_recipe_9.9ep_b1024_seed0.json", 0, {"none": 0.5, "flip": 0.5, "flip_shift": 0.5})
    ours, peer, variants = report.equal_epoch_runs(tmp_path)
    assert len(ours) == 2 and len(peer) == 1 and len(variants) == 1
    assert variants[0].change == "batch 1,024" and ours[0].change == ""
    assert report.runs_table(variants)[2].startswith(
        "| fast recipe (ours), float32, batch 1,024 | 0 | 512 |")
    runs = ours + peer
    assert ours[0].images_per_s == pytest.approx(10 * 512 / 120)
    assert peer[0].curve == [(0.5, 0.6), (1.0, 0.7)]  # minutes are cumulative
    assert ours[0].curve == [(1.0, 0.6), (2.0, 0.7)] and ours[0].cpu == "neither"
    table = report.runs_table(runs)
    assert len(table) == 2 + 2 + 1 + 1  # header, rule, two seeds, their mean, the reference
    assert "**0.9100**" in table[4] and "**mean of 2**" in table[4]
    assert table[2].startswith("| fast recipe (ours), float32 | 0 | 512 | — | 2.0 min | 43 |")
    gap = report.gap_table(ours, peer)
    assert gap[2].startswith("| none | 0.9100 | 0.9100 | +0.00 points")
    assert gap[4].endswith("| 0.9300 | 0.9350 | -0.50 points |")
    fig = report.time_to_accuracy(runs, [(6.0, 0.61)])
    assert len(fig.axes[0].get_legend().get_texts()) == 3  # seeds share their line's entry


def test_a_run_that_waited_for_the_cores_shows_its_time_in_parentheses(report,
                                                                      tmp_path: Path) -> None:
    _ours(tmp_path / "fast_recipe_9.9ep_original_seed0.json", 0,
          {"none": 0.93, "flip": 0.94, "flip_shift": 0.945})
    waited = _peer(tmp_path / "peer_airbench_original_seed0.json", 0, [0.93, 0.935, 0.94])
    ours, reference, _ = report.equal_epoch_runs(tmp_path)
    assert report.runs_table(ours + reference)[-1].startswith("| airbench94")  # no note yet
    record = json.loads(waited.read_text())
    record["cpu_per_wall_train94"] = 1.22
    waited.write_text(json.dumps(record))
    ours, reference, _ = report.equal_epoch_runs(tmp_path)
    assert reference[0].cores == pytest.approx(1.22)
    table = report.runs_table(ours + reference)
    assert "| 2.0 min | 43 |" in table[2]  # 1.9 cores busy: alone on the machine
    assert "| (1.0 min) | (85) |" in table[3]
    assert table[-1].startswith("(…): the run kept fewer than 1.9 of the two cores busy")


def test_the_tables_keep_the_jpeg_copy_and_the_original_images_apart(report,
                                                                    tmp_path: Path) -> None:
    acc = {"none": 0.93, "flip": 0.94, "flip_shift": 0.945}
    _ours(tmp_path / "fast_recipe_9.9ep_seed0.json", 0, acc, data=JPEG_COPY)
    _ours(tmp_path / "fast_recipe_9.9ep_seed1.json", 1, acc, data=JPEG_COPY)
    _ours(tmp_path / "fast_recipe_9.9ep_b1024_seed0.json", 0, acc, data=JPEG_COPY)
    _peer(tmp_path / "peer_airbench_seed0.json", 0, [0.90, 0.904, 0.905], data=JPEG_COPY)
    # The page compares the runs on the original images only.
    assert report.equal_epoch_runs(tmp_path) == ([], [], [])
    assert report.lossy_copy_table(*report.equal_epoch_runs(tmp_path, original=None)[:2]) == []
    # The recipe's plain runs on the original images are named by their data, not a change.
    _ours(tmp_path / "fast_recipe_9.9ep_original_seed0.json", 0,
          {"none": 0.935, "flip": 0.94, "flip_shift": 0.9412})
    _peer(tmp_path / "peer_airbench_original_seed0.json", 0, [0.93, 0.935, 0.9400])
    ours, reference, variants = report.equal_epoch_runs(tmp_path)
    assert [r.file for r in ours + reference] == ["fast_recipe_9.9ep_original_seed0.json",
                                                   "peer_airbench_original_seed0.json"]
    assert variants == []  # the JPEG copy's ablation stays out
    jpeg = report.equal_epoch_runs(tmp_path, original=False)
    assert [len(runs) for runs in jpeg] == [2, 1, 1]
    both = report.equal_epoch_runs(tmp_path, original=None)
    lossy = report.lossy_copy_table(both[0], both[1])
    assert lossy[2] == ("| fast recipe (ours) | 0.9412 (1 seed) | 0.9450 (2 seeds) "
                        "| +0.38 points |")
    assert lossy[3] == ("| airbench94 (reference) | 0.9400 (1 seed) | 0.9050 (1 seed) "
                        "| -3.50 points |")
    assert report.lossy_copy_table(ours, reference) == []  # one data only: no row


def test_the_page_shows_the_recorded_comparison(report) -> None:
    ours, reference, variants = report.equal_epoch_runs()
    if not ours or not reference:
        pytest.skip("bench/results holds no equal-epoch runs of both implementations yet")
    page = PAGE.read_text(encoding="utf-8")
    lines = report.runs_table(ours + reference + variants) + report.gap_table(ours, reference)
    missing = [line for line in lines if line not in page]
    assert not missing, ("chapters/benchmarks.md differs from bench/report.py's tables; paste "
                         "its output:\n" + "\n".join(missing))


def _profile(path: Path, label: str, conv_ms: float, other_ms: float) -> Path:
    groups = {"3x3 convolutions": conv_ms, "batch norm": other_ms}
    path.write_text(json.dumps({"label": label, "args": {"batch_size": 512},
                                "op_ms_per_step": groups, "step_ms": conv_ms + other_ms,
                                "step_images_per_s": 512 / (conv_ms + other_ms) * 1000,
                                "conv_images_per_s": 512 / conv_ms * 1000}))
    return path


def test_profile_table(report, tmp_path: Path) -> None:
    _profile(tmp_path / "profile_step_a.json", "Keras norm", 1000.0, 500.0)
    _profile(tmp_path / "profile_step_b.json", "fused norm", 1000.0, 250.0)
    _profile(tmp_path / "profile_step_c.json", "not asked for", 1.0, 1.0)
    profiles = report.load_profiles(tmp_path, names=("a", "b", "missing"))
    table = report.profile_table(profiles, groups=("batch norm", "GELU"))
    assert table[0] == "| ms per step of 512 images | Keras norm | fused norm |"
    assert table[2] == "| batch norm | 500 | 250 |"
    assert table[3] == "| GELU | 0 | 0 |"  # a group a profile did not time
    assert table[4] == "| everything else | 1000 | 1000 |"  # the convolutions here
    assert "| sum of the ops | 1500 | 1250 |" in table
    assert "| images/s, the step | 341 | 410 |" in table
    assert table[-1] == "| images/s, its convolutions alone | 512 | 512 |"
    assert report.profile_table([]) == []


def _assert_on_page(lines: Sequence[str], what: str) -> None:
    page = PAGE.read_text(encoding="utf-8")
    missing = [line for line in lines if line not in page]
    assert not missing, (f"chapters/benchmarks.md differs from bench/report.py's {what}; "
                         "paste its output:\n" + "\n".join(missing))


def test_the_page_shows_the_recorded_profiles(report) -> None:
    profiles = report.load_profiles()
    if not profiles:
        pytest.skip("bench/results holds no profile of the step yet")
    _assert_on_page(report.profile_table(profiles), "profile table")


def test_coded_runs_name_their_change_and_the_figure_draws_one_machine(report,
                                                                      tmp_path: Path) -> None:
    acc = {"none": 0.9, "flip": 0.91, "flip_shift": 0.92}
    _ours(tmp_path / "fast_recipe_14ep_wide_seed0.json", 0, acc)
    _ours(tmp_path / "fast_recipe_14ep_wide_seed1.json", 1, acc)
    _ours(tmp_path / "fast_recipe_32ep_seed0.json", 0, acc)
    wide = report.load_coded_runs("14ep_wide", tmp_path)
    plain = report.load_coded_runs("32ep", tmp_path)
    assert [r.seed for r in wide] == [0, 1] and len(plain) == 1
    assert wide[0].change == "widths 128/384/384, lr 10" and plain[0].change == ""
    assert report.runs_table(wide)[2].startswith(
        "| fast recipe (ours), float32, widths 128/384/384, lr 10 | 0 |")
    assert report.load_coded_runs("99ep", tmp_path) == []
    runs = [{"train_seconds": 120.0, "test_accuracy": 0.6}]
    (tmp_path / "seed_cnn.json").write_text(json.dumps({"data": ORIGINAL, "runs": runs}))
    (tmp_path / "vgg_bn.json").write_text(json.dumps({"data": JPEG_COPY, "runs": runs}))
    assert report.seed_cnn_points(tmp_path) == [(2.0, 0.6)]
    assert report.seed_cnn_points(tmp_path, "vgg_bn.json") == []  # the JPEG copy's
    fig = report.time_to_accuracy(plain + wide, [(2.0, 0.6)], "AMD EPYC (family 25)")
    (ax,) = fig.axes
    assert ax.get_title() == "AMD EPYC (family 25)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "fast recipe (ours), float32, 9.9 epochs",
        "fast recipe (ours), float32, 9.9 epochs,\nwidths 128/384/384, lr 10",  # two seeds, one entry
        "seed CNN, 20 epochs (end)"]


def test_the_page_shows_the_amx_profiles(report) -> None:
    profiles = report.load_profiles(names=report.AMX_PROFILES)
    if not profiles:
        pytest.skip("bench/results holds nothing timed on the AMX Xeon yet")
    _assert_on_page(report.profile_table(profiles), "profile table of the AMX Xeon")


def test_the_page_shows_the_provenance_of_every_file_it_quotes(report) -> None:
    files = report.page_files()
    if not files:
        pytest.skip("bench/results holds no result the page quotes yet")
    figure = {report.RESULTS / name for name in report.FIGURE_RUNS}
    assert figure <= set(files), "the figure draws a run the provenance table leaves out"
    _assert_on_page(report.provenance_table(files), "provenance table")


def test_the_page_shows_every_table_between_its_markers(report) -> None:
    page = PAGE.read_text(encoding="utf-8")
    for name, lines in report.page_tables():
        start, end = f"<!-- bench/report.py: {name} -->", f"<!-- end of {name} -->"
        assert start in page and end in page, f"the page has no markers for the {name} table"
        between = page.split(start, 1)[1].split(end, 1)[0]
        assert between.strip() == "\n".join(lines), (
            f"chapters/benchmarks.md differs from bench/report.py's {name} table; paste its output")


def test_fill_page_replaces_what_stands_between_the_markers(report) -> None:
    page = ("intro\n<!-- bench/report.py: gap -->\n\nold | row\n\n<!-- end of gap -->\n"
            "after\n")
    filled = report.fill_page(page, [("gap", ["| a |", "| b |"])])
    assert filled == ("intro\n<!-- bench/report.py: gap -->\n\n| a |\n| b |\n\n"
                      "<!-- end of gap -->\nafter\n")
    assert report.fill_page(filled, [("gap", ["| a |", "| b |"])]) == filled
    with pytest.raises(ValueError, match="no markers for the runs table"):
        report.fill_page(page, [("runs", ["| a |"])])


@pytest.fixture(scope="module")
def common(report):
    import _common  # put on the path by report.py, as the scripts find it

    return _common


def test_every_result_file_is_strict_json_with_its_provenance(common) -> None:
    paths = sorted((ROOT / "bench" / "results").rglob("*.json"))
    assert paths, "bench/results holds no result file"
    for path in paths:
        def refuse(token: str, name: str = path.name) -> None:
            pytest.fail(f"{name}: {token}")

        result = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
        assert isinstance(result, dict), path.name
        assert result.get("commit") and "dirty" in result, f"{path.name} names no commit"
        assert set(result.get("data") or {}) >= {"name", "format", "original"}, path.name
        history = result.get("history") or {}
        assert not any("val_accuracy" in r for r in history.get("records", [])), (
            f"{path.name}: held-out accuracy on the test set is test_accuracy")


def test_the_writer_refuses_nan_and_replaces_atomically(common, tmp_path: Path) -> None:
    import numpy as np

    path = common.write_json(tmp_path / "r.json", {"acc": np.float32(0.5), "loss": float("nan"),
                                                   "curve": (np.arange(2), float("inf"))})
    assert json.loads(path.read_text()) == {"acc": 0.5, "loss": None, "curve": [[0, 1], None]}
    path.write_text('{"loss": NaN}')
    with pytest.raises(ValueError, match="NaN is not JSON"):
        common.read_json(path)
    with pytest.raises(TypeError):  # not JSON at all: the old file stays
        common.write_json(path, {"x": object()})
    assert path.read_text() == '{"loss": NaN}' and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_run_metadata_names_commit_machine_and_data(common, tmp_path: Path) -> None:
    for fmt, suffix in (("png", ".png"), ("jpeg", ".jpg")):
        (tmp_path / fmt / "train" / "cat").mkdir(parents=True)
        (tmp_path / fmt / "train" / "cat" / f"0001{suffix}").write_bytes(b"")
    meta = common.run_metadata(tmp_path / "png", argv=["bench/x.py", str(tmp_path / "png")])
    assert len(meta["commit"]) == 40 and isinstance(meta["dirty"], bool)
    assert meta["data"] == {"name": "png", "format": "png", "original": True}
    assert not any(arg.startswith("/") for arg in meta["argv"])
    assert meta["machine"]["matrix_extensions"] in ("AMX-BF16", "AVX512-BF16", "neither")
    assert meta["versions"]["keras"] and meta["utc"].endswith("+00:00")
    assert common.describe_data(tmp_path / "jpeg")["original"] is False
    assert common.describe_data(None)["format"] == "tfds"
    # a long run records the commit it started from, not the one checked out at its end
    started = {"commit": "f" * 40, "dirty": False}
    assert {k: common.run_metadata(None, git=started)[k] for k in started} == started


def test_paths_are_recorded_from_the_project_or_the_home_folder(common, tmp_path: Path,
                                                                  monkeypatch) -> None:
    project, home = tmp_path / "work" / "main", tmp_path / "home" / "me"
    monkeypatch.setenv("HOME", str(home))
    data = home / ".cache" / "cifar10-png"
    assert common.portable_path(project.parent / "shared" / "data", project) == "../shared/data"
    assert common.portable_path(data, project) == "~/.cache/cifar10-png"
    assert common.portable_argv(["x.py", f"--data-dir={data}", str(project / "out.json")],
                                project) == ["x.py", "--data-dir=~/.cache/cifar10-png", "out.json"]
    args = common.portable_args({"data_dir": str(data), "seeds": [0, 1], "out": "rel.json",
                                 "paths": [str(data)]}, project)
    assert args == {"data_dir": "~/.cache/cifar10-png", "seeds": [0, 1], "out": "rel.json",
                    "paths": ["~/.cache/cifar10-png"]}


@pytest.mark.parametrize("flags, name", [({"amx_bf16", "avx512_bf16"}, "AMX-BF16"),
                                         ({"avx512_bf16"}, "AVX512-BF16"), ({"avx2"}, "neither")])
def test_matrix_extensions_name_the_fastest(common, flags, name: str) -> None:
    assert common.matrix_extensions(flags) == name


def test_describe_cpu_names_this_machine(common) -> None:
    from cifar_tutorial import runtime

    cpu = common.describe_cpu()
    assert cpu["matrix_extensions"] == common.matrix_extensions(runtime.cpu_flags())
    assert cpu["avx512f"] == ("avx512f" in runtime.cpu_flags()) and cpu["cpu_model"]
    if Path("/proc/cpuinfo").exists():
        assert cpu["cpu_generation"].startswith("family ") and ", model " in cpu["cpu_generation"]


def test_describe_cpu_reads_the_first_processor(common, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\ncpu family\t: 6\nmodel\t\t: 167\n"
                       "flags\t\t: fpu avx512f amx_bf16\n\nprocessor\t: 1\nmodel name\t: Other\n")
    cpu = common.describe_cpu(cpuinfo)
    assert cpu["cpu_model"] == "Test CPU" and cpu["cpu_generation"] == "family 6, model 167"
    assert cpu["matrix_extensions"] == "AMX-BF16" and cpu["avx512f"] is True


def test_provenance_table(report, common, tmp_path: Path) -> None:
    path = common.write_json(tmp_path / "fast_recipe_9.9ep_seed0.json", {
        "commit": "0123456789abcdef", "dirty": True,
        "argv": ["bench/fast_recipe.py", "--seed", "0", "--data-dir",
                 "~/.cache/cifar-tutorial/cifar10-png/cifar10", "--checkpoint-dir=runs/x",
                 "--out", "bench/results/x.json"],
        "machine": {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_generation": "family 6, model 167",
                    "matrix_extensions": "AMX-BF16"},
        "data": {"name": "cifar10", "format": "png", "original": True},
        "history": {"summary": {"precision": "mixed_bfloat16"},
                    "records": [{"cpu_per_wall": 1.4}, {"cpu_per_wall": 1.6}]}})
    old = common.write_json(tmp_path / "peer_airbench_seed0.json",
                            {"commit": "fedcba9876543210", "commit_note": "recovered",
                             "data": JPEG_COPY, "cpu_per_wall_train94": 1.875})
    table = report.provenance_table([path, old])
    assert table[2] == ("| fast_<wbr>recipe_<wbr>9.9ep_<wbr>seed0 | "
                        "Intel Xeon (family 6, model 167), AMX-BF16 | 1.50 | "
                        "bfloat16, original (PNG) | 0123456789* | "
                        "`bench/fast_recipe.py --seed 0 --data-dir \"$CIFAR10_DIR\"` |")
    assert table[3] == ("| peer_<wbr>airbench_<wbr>seed0 | — | 1.88 | "
                        "float32, lossy JPEG copy | fedcba9876 † | — |")
    assert "†: the commit that added the file" in table[-1]
    assert "†" not in report.provenance_table([path])[-1]
    (tmp_path / "zen1").mkdir()
    repeat = common.write_json(tmp_path / "zen1" / "fast_recipe_9.9ep_seed0.json", {})
    assert report.provenance_table([repeat], root=tmp_path)[2].startswith(
        "| zen1/fast_<wbr>recipe_<wbr>9.9ep_<wbr>seed0 | — | — |")


def test_chapter_8_reads_what_the_fast_recipe_writes(common, tmp_path: Path) -> None:
    """A History of train_fast, written as bench/fast_recipe.py writes it, read by chapter 9."""
    import numpy as np

    from cifar_tutorial import experiments, recipes

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(48, 32, 32, 3), dtype=np.uint8)
    y = np.arange(48) % 10
    hyp = recipes.FastHyperparameters(epochs=2, batch_size=16, widths=(8, 8, 8), tta="flip_shift")
    _, history = recipes.train_fast(x, y, x[:16], y[:16], hyp, heldout="test",
                                    precision="float32", verbose=0)
    path = common.write_json(tmp_path / "fast_recipe_seed3.json", {
        **common.run_metadata(None, argv=["bench/fast_recipe.py"]), "args": {"seed": 3},
        "history": history.to_dict()})
    (row,), missing = experiments.read_bench_results([path])
    summary = history.summary
    assert missing == [] and row["seed"] == 3 and row["epochs"] == 2
    assert row["train_min"] == pytest.approx(summary["train_seconds"] / 60)
    assert row["images_per_s"] == summary["images_per_s"] and row["params"] == summary["params"]
    assert [row["test_acc"], row["test_acc_tta"], row["test_acc_tta2"]] == list(
        summary["test_accuracy"].values())
    assert row["curve_acc"] == history["test_accuracy"]
    assert row["curve_min"] == pytest.approx([s / 60 for s in history["elapsed_seconds"]])
    assert row["cores"] == pytest.approx(np.mean(history["cpu_per_wall"]))
    assert row["commit"] and row["data"] == "tensorflow_datasets:cifar10"


def test_seed_cnn_table_shows_runs_on_the_original_images_only(report, tmp_path: Path) -> None:
    runs = [{"seed": s, "train_seconds": 60.0 * (s + 5), "images_per_second": 2500.0 + s,
             "train_accuracy": 0.64, "test_accuracy": acc}
            for s, acc in ((0, 0.61), (1, 0.63), (2, 0.62))]
    machine = {"cpu_model": "AMD EPYC", "cpu_generation": "family 25, model 17"}
    (tmp_path / "seed_cnn.json").write_text(json.dumps(
        {"data": ORIGINAL, "machine": machine, "runs": runs}))
    lines = report.seed_cnn_table(tmp_path)
    assert lines[2] == "| 0 | AMD EPYC (Zen 4) | 5.0 min | 2,500 | 0.6400 | 0.6100 |"
    assert lines[-1] == "| **mean of 3** |  |  |  | **0.6400** | **0.6200** ± 0.0100 |"
    (tmp_path / "seed_cnn.json").write_text(json.dumps(
        {"data": JPEG_COPY, "machine": machine, "runs": runs}))
    assert report.seed_cnn_table(tmp_path) == []
    assert report.seed_cnn_table(tmp_path / "nowhere") == []


def test_pipeline_table_gives_both_ways(report, tmp_path: Path) -> None:
    way = {"seconds": 8.57, "peak_mib": 1398.6, "peak_above_imports_mib": 731.7}
    slow = {"seconds": 132.74, "peak_mib": 3859.0, "peak_above_imports_mib": 3184.1}
    (tmp_path / "data_pipeline.json").write_text(json.dumps(
        {"data": ORIGINAL, "machine": {"cpu_model": "AMD EPYC"}, "ours": way, "seed": slow}))
    lines = report.pipeline_table(tmp_path)
    assert lines[2:] == ["| `load_cifar10` and `tf.data` | AMD EPYC | 8.6 s | 732 MiB | 1,399 MiB |",
                         "| the seed's way | AMD EPYC | 132.7 s | 3,184 MiB | 3,859 MiB |"]
    (tmp_path / "data_pipeline.json").write_text(json.dumps(
        {"data": JPEG_COPY, "ours": way, "seed": slow}))
    assert report.pipeline_table(tmp_path) == []


def test_short_cpu_names_amd_generations_the_family_leaves_apart(report) -> None:
    zen3 = {"cpu_model": "AMD EPYC", "cpu_generation": "family 25, model 1"}
    zen4 = {"cpu_model": "AMD EPYC", "cpu_generation": "family 25, model 17"}
    xeon = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_generation": "family 6, model 167"}
    assert report.short_cpu(zen3) == "AMD EPYC (Zen 3)"
    zen1 = {"cpu_model": "AMD EPYC", "cpu_generation": "family 23, model 1"}
    assert report.short_cpu(zen1) == "AMD EPYC (Zen 1)"
    assert report.short_cpu(zen4) == "AMD EPYC (Zen 4)"
    assert report.short_cpu(zen4, generation=True) == "AMD EPYC (family 25, model 17)"
    assert report.short_cpu(xeon) == "Intel Xeon (family 6)"
    unknown = {"cpu_model": "AMD EPYC", "cpu_generation": "family 25, model 99"}
    assert report.short_cpu(unknown) == "AMD EPYC (family 25)"
    assert report.short_cpu({"cpu_model": "AMD EPYC"}) == "AMD EPYC"


def test_speed_table_gives_each_epoch_and_the_cores_busy(report, tmp_path: Path) -> None:
    ours = report.load_run(_ours(tmp_path / "fast_recipe_2ep_speed_seed0.json", 0,
                                 {"none": 0.5, "flip": 0.5, "flip_shift": 0.5}))
    peer = report.load_run(_peer(tmp_path / "peer_airbench_2ep_speed_seed0.json", 0,
                                 [0.5, 0.5, 0.5]))
    assert ours.implementation.startswith("fast recipe") and peer.implementation.startswith("air")
    table = report.speed_table([ours, peer])
    assert table[0] == "| run | CPU | batch | epoch 1 | epoch 2 | images/s | cores busy |"
    assert table[2] == "| fast recipe (ours), float32 | — | 512 | 60 s | 60 s | 43 | 1.90 |"
    assert table[3] == "| airbench94 (reference), float32 | — | 1024 | 30 s | 30 s | 85 | — |"
    assert report.speed_table([]) == []


def test_repeat_table_sets_a_run_beside_its_repeat_on_another_cpu(report, tmp_path: Path) -> None:
    first = report.load_run(_ours(tmp_path / "fast_recipe_9.9ep_seed1.json", 1,
                                  {"none": 0.93321, "flip": 0.9366, "flip_shift": 0.9389}))
    (tmp_path / "zen1").mkdir()
    repeat = dataclasses.replace(report.load_run(_ours(
        tmp_path / "zen1" / "fast_recipe_9.9ep_seed1.json", 1,
        {"none": 0.93349, "flip": 0.9371, "flip_shift": 0.9380})), machine="AMD EPYC (Zen 1)",
        cores=1.5)
    table = report.repeat_table([(first, repeat)])
    assert table[0] == ("| run | seed | CPU | training | images/s | no TTA | flip | "
                        "flip + shift |")
    assert table[2] == ("| fast recipe (ours), float32 | 1 | — | 2.0 min | 43 | 0.9332 | "
                        "0.9366 | 0.9389 |")
    assert table[3] == ("| fast recipe (ours), float32 | 1 | AMD EPYC (Zen 1) | (2.0 min) | (43) | "
                        "0.9335 | 0.9371 | 0.9380 |")
    # the difference of the numbers as printed: 0.9335 - 0.9332, not 0.93349 - 0.93321
    assert table[4] == "| **second CPU − first** |  |  |  |  | **+0.03** | **+0.05** | **-0.09** |"
    assert table[-1].startswith("(…): the run kept fewer than")
    assert report.repeat_table([]) == []
