"""The benchmarks page's comparison tables and time-to-accuracy figure, from ``bench/results/``.

Every number the page shows about the fast recipe and the reference comes from the
JSON files the benchmarks wrote; this script reads them and prints the page's
Markdown tables, each between the markers that surround it on the page, the
provenance table of the files the page quotes first (``tests/test_bench_report.py``
checks that the page holds exactly these lines), and draws the figure::

    .venv/bin/python bench/report.py                       # the tables
    .venv/bin/python bench/report.py --page chapters/benchmarks.md   # into the page
    .venv/bin/python bench/report.py --figure chapters/images/time_to_accuracy.png

Runs of our recipe are ``fast_recipe_*.json`` (``bench/fast_recipe.py``, read with
:func:`cifar_tutorial.experiments.read_bench_results`, as chapter 9 reads them), runs
of the reference are ``peer_airbench_*.json`` (``bench/peer_airbench.py``), and the
seed CNN's are in ``seed_cnn.json`` (``bench/seed_cnn.py``); the profiles of the
recipe's step are ``profile_step_*.json`` (``bench/profile_step.py``). Every file is
strict JSON with the provenance of ``bench/_common.py``'s ``run_metadata``, which
:func:`provenance_table` prints. The page compares runs on the original images;
the runs on the lossy JPEG copy appear only where it measures what the copy costs
(:func:`lossy_copy_table`).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from cifar_tutorial.evaluate import TTA_LEVELS as LEVELS  # airbench calls them 0, 1, 2
from cifar_tutorial.experiments import read_bench_results
from cifar_tutorial.plots import PAGE_WIDTH

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # a test loads this file by its path
    sys.path.insert(0, str(BENCH))
from _common import read_json  # noqa: E402

RESULTS = BENCH / "results"


#: What the tables print where a run did not record a value.
NOT_RECORDED = "—"


@dataclasses.dataclass
class Run:
    """One recorded training run, in the terms the page compares."""

    implementation: str
    file: str
    seed: int
    epochs: float
    batch_size: int
    precision: str
    train_seconds: float
    images_per_s: float
    accuracy: dict[str, float]
    curve: list[tuple[float, float]]  # (minutes of training, test accuracy) after each epoch
    cpu: str | None = None
    change: str = ""  # what a one-change run changed, in words ("" for the recipe itself)
    original: bool | None = None  # the original images (True), the JPEG copy (False)
    machine: str = NOT_RECORDED  # the CPU in short, as the tables name it beside a time
    cores: float | None = None  # CPU seconds per second of training (:func:`cores_busy`)


#: AMD's names of the core generations the recorded runs ran on, by CPU family and
#: model (``/proc/cpuinfo``): the family alone does not tell Zen 3 from Zen 4.
AMD_CORES = {("23", "1"): "Zen 1", ("25", "1"): "Zen 3", ("25", "17"): "Zen 4",
             ("26", "2"): "Zen 5"}


def short_cpu(machine: dict, generation: bool = False) -> str:
    """The CPU a run was timed on, in short: ``AMD EPYC (Zen 4)`` where :data:`AMD_CORES`
    names its generation, else ``Intel Xeon (family 6)``, or ``AMD EPYC`` where the run
    did not record the generation; with ``generation``, the family and model numbers
    (``Intel Xeon (family 6, model 167)``)."""
    model = machine.get("cpu_model")
    if not model:
        return NOT_RECORDED
    for word in ("(R)", "(TM)", "Processor", "CPU"):
        model = model.replace(word, "")
    model = " ".join(model.split())
    family = machine.get("cpu_generation") or ""  # "family 25, model 17"
    if family and not generation:
        numbers = tuple(part.split()[-1] for part in family.split(","))
        zen = AMD_CORES.get(numbers) if model.startswith("AMD") else None
        family = zen or family.split(",")[0]
    return f"{model} ({family})" if family else model


#: The one-change runs' file codes (``fast_recipe_9.9ep_<code>_seed<S>.json``), in words.
CHANGES = {"b1024": "batch 1,024", "fused": "fused ops", "bnm0.8": "norm momentum 0.8",
           "nolookahead": "no Lookahead", "la10": "Lookahead every 10 steps",
           "f32": "fused ops",  # the precision shows in the run's name
           "wide": "widths 128/384/384, lr 10"}


def load_ours(path: Path) -> Run:
    """A run of ``bench/fast_recipe.py``, read by chapter 9's own reader of its files."""
    (row,), _ = read_bench_results([path])
    d = read_json(path)
    machine = d.get("machine") or {}
    accuracy = {"none": row["test_acc"], "flip": row["test_acc_tta"],
                "flip_shift": row["test_acc_tta2"]}
    return Run("fast recipe (ours)", path.name, int(row["seed"]), float(row["epochs"]),
               int(row["batch_size"]), row["precision"], row["train_min"] * 60,
               row["images_per_s"], accuracy, list(zip(row["curve_min"], row["curve_acc"])),
               machine.get("matrix_extensions"), original=(d.get("data") or {}).get("original"),
               machine=short_cpu(machine), cores=cores_busy(d))


def load_peer(path: Path) -> Run:
    """A run of ``bench/peer_airbench.py``: airbench94 on the same images."""
    d = read_json(path)
    elapsed, curve = 0.0, []
    for row in d["per_epoch"]:
        elapsed += row["train_time_s"]
        curve.append((elapsed / 60, row["test_acc"]))
    accuracy = {level: d["test_acc"][str(i)] for i, level in enumerate(LEVELS)}
    return Run("airbench94 (reference)", path.name, int(d["seed"]), float(d["epochs"]),
               int(d["batch_size"]), "float32", float(d["train_time_s"]),
               float(d["images_per_s"]), accuracy, curve, d["machine"].get("matrix_extensions"),
               original=(d.get("data") or {}).get("original"), machine=short_cpu(d["machine"]),
               cores=cores_busy(d))


def load_coded_runs(code: str, results: Path = RESULTS) -> list[Run]:
    """Our runs ``fast_recipe_<code>_seed<S>.json``; a code such as ``14ep_wide``
    names the epochs, then the change (:data:`CHANGES`) the runs make to the recipe."""
    change = code.split("_", 1)[1] if "_" in code else ""
    return [dataclasses.replace(load_ours(p), change=CHANGES.get(change, change))
            for p in sorted(results.glob(f"fast_recipe_{code}_seed*.json"))]


#: The runs the time-to-accuracy figure draws: on the original images, timed on one
#: machine (the Zen 4 EPYC), one after the other, each alone on it; the seed CNN's
#: runs (``seed_cnn.json``) were timed there too.
FIGURE_RUNS: tuple[str, ...] = ("fast_recipe_9.9ep_original_seed1.json",
                                "fast_recipe_14ep_original_seed0.json")


#: Runs of the recipe given about 30 minutes of training on a CPU without AMX: as many
#: epochs as that CPU's fastest precision trains in half an hour (the page's "half an
#: hour" table).
HALF_HOUR_RUNS: tuple[str, ...] = ("fast_recipe_14ep_original_seed0.json",)


#: Short runs of both implementations timed one after the other on one CPU, each alone
#: on it: the page's side-by-side speed table (:func:`speed_table`).
SPEED_RUNS: tuple[str, ...] = ("fast_recipe_2ep_speed_seed0.json",
                               "peer_airbench_2ep_speed_seed0.json")


#: Runs repeated on a second CPU with the same settings (seed, epochs, precision), as
#: (first, repeat) files under ``bench/results``: how much the CPU alone moves a run's
#: accuracy (the page's "same seed, two CPUs" table, :func:`repeat_table`). A repeat
#: lives in a folder named after its CPU, so that the equal-epoch tables leave it out.
CPU_REPEATS: tuple[tuple[str, str], ...] = tuple(
    (f"fast_recipe_9.9ep_original_seed{seed}.json",
     f"zen1/fast_recipe_9.9ep_original_seed{seed}.json") for seed in (0, 1))


#: The file code of the recipe's plain runs on the original images
#: (``fast_recipe_9.9ep_original_seed<S>.json``): a name of the data, not a change to the recipe.
ORIGINAL_CODE = "original"


def equal_epoch_runs(results: Path = RESULTS, original: bool | None = True,
                     ) -> tuple[list[Run], list[Run], list[Run]]:
    """Our recipe at 9.9 epochs, the reference (9.9 epochs), and our one-change variants.

    The files follow ``bench/fast_recipe.py``'s names: ``fast_recipe_9.9ep_seed<S>.json``
    (or ``fast_recipe_9.9ep_original_seed<S>.json``, :data:`ORIGINAL_CODE`) for the recipe
    as the book gives it, ``fast_recipe_9.9ep_<change>_seed<S>.json`` for
    a run with one setting changed (an ablation); the reference's are
    ``peer_airbench_seed<S>.json`` or ``peer_airbench_original_seed<S>.json``.
    ``original`` keeps the runs on one data: ``True`` the original images (the page's
    comparison), ``False`` the lossy JPEG copy, ``None`` all of them.
    """
    def keep(runs: list[Run]) -> list[Run]:
        return [r for r in runs if original is None or r.original is original]

    plain = [p for name in ("9.9ep", f"9.9ep_{ORIGINAL_CODE}")
             for p in sorted(results.glob(f"fast_recipe_{name}_seed*.json"))]
    ours = keep([load_ours(p) for p in plain])
    reference = keep([load_peer(p) for name in ("", f"{ORIGINAL_CODE}_")
                      for p in sorted(results.glob(f"peer_airbench_{name}seed*.json"))])
    codes = {p.name.removeprefix("fast_recipe_").rsplit("_seed", 1)[0]
             for p in results.glob("fast_recipe_9.9ep_*_seed*.json")}
    codes = sorted(codes - {f"9.9ep_{ORIGINAL_CODE}"})
    variants = keep([run for code in codes for run in load_coded_runs(code, results)])
    return ours, reference, variants


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


SHORT_PRECISION = {"mixed_bfloat16": "bfloat16", "float32": "float32"}

#: Below this many cores busy on average (of two), a run waited for the cores: the
#: tables put its time and speed in parentheses, as not the recipe's.
ALONE_CORES = 1.9


def runs_table(runs: Sequence[Run]) -> list[str]:
    """Markdown lines: one row per run, and the mean of each group of seeds.

    The run's name carries its precision and, where it is not 9.9, its epochs, so
    that the table fits the page; the CPU the run was timed on stands beside its time,
    and the time of a run that waited for the cores (:data:`ALONE_CORES`) in parentheses.
    """
    head = ["run", "seed", "batch", "CPU", "training", "images/s", "no TTA", "flip",
            "flip + shift"]
    lines = [_row(head), _row(["---", "---:", "---:", "---"] + ["---:"] * (len(head) - 4))]
    waited = False
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.implementation, run.epochs, run.batch_size, run.precision,
                           run.change), []).append(run)
    for members in groups.values():
        label, batch = _label(members[0]), members[0].batch_size
        for run in sorted(members, key=lambda r: r.seed):
            cells, slowed = _run_cells(run)
            waited = waited or slowed
            lines.append(_row([label, str(run.seed), str(batch), *cells]))
        if len(members) > 1:
            mean = {level: statistics.mean(r.accuracy[level] for r in members) for level in LEVELS}
            lines.append(_row([f"**mean of {len(members)}**", "", str(batch), "", "", "",
                               *(f"**{mean[level]:.4f}**" for level in LEVELS)]))
    return lines + (WAITED if waited else [])


#: The key under a table that shows a run's time in parentheses.
WAITED = ["", f"(…): the run kept fewer than {ALONE_CORES} of the two cores busy on average "
          "(the provenance table's cores busy): it waited for them, and its time and speed "
          "are not the recipe's. Its accuracy stands."]


def _label(run: Run) -> str:
    """The run's name in a table: implementation, precision, epochs (where not 9.9), change."""
    label = f"{run.implementation}, {SHORT_PRECISION.get(run.precision, run.precision)}"
    if run.epochs != 9.9:
        label += f", {run.epochs:g} epochs"
    return label + (f", {run.change}" if run.change else "")


def _run_cells(run: Run) -> tuple[list[str], bool]:
    """A run's CPU, training time, speed and three accuracies as table cells, and whether
    it waited for the cores (:data:`ALONE_CORES`: then its time is in parentheses)."""
    time, speed = f"{run.train_seconds / 60:.1f} min", f"{run.images_per_s:.0f}"
    waited = run.cores is not None and run.cores < ALONE_CORES
    if waited:
        time, speed = f"({time})", f"({speed})"
    return [run.machine, time, speed, *(f"{run.accuracy[level]:.4f}" for level in LEVELS)], waited


def repeat_table(pairs: Sequence[tuple[Run, Run]]) -> list[str]:
    """Markdown lines: runs repeated on a second CPU (:data:`CPU_REPEATS`), each with the
    same seed, epochs and precision as the first, and at each TTA level the repeat's test
    accuracy minus the first's; no lines without pairs."""
    if not pairs:
        return []
    head = ["run", "seed", "CPU", "training", "images/s", "no TTA", "flip", "flip + shift"]
    lines = [_row(head), _row(["---", "---:", "---"] + ["---:"] * (len(head) - 3))]
    waited = False
    for first, repeat in pairs:
        for run in (first, repeat):
            cells, slowed = _run_cells(run)
            waited = waited or slowed
            lines.append(_row([_label(run), str(run.seed), *cells]))
        lines.append(_row(["**second CPU − first**", "", "", "", "", *(
            f"**{_points(repeat.accuracy[level], first.accuracy[level])}**"
            for level in LEVELS)]))
    return lines + (WAITED if waited else [])


def load_run(path: Path) -> Run:
    """A run of either benchmark, by its file name (``peer_airbench_*`` the reference's)."""
    return load_peer(path) if path.name.startswith("peer_airbench") else load_ours(path)


def speed_table(runs: Sequence[Run]) -> list[str]:
    """Markdown lines: the training time of each epoch and the images per second of
    short runs timed on one CPU (:data:`SPEED_RUNS`), and how busy they kept its cores;
    no lines without runs."""
    if not runs:
        return []
    epochs = max(len(run.curve) for run in runs)
    head = (["run", "CPU", "batch"] + [f"epoch {i + 1}" for i in range(epochs)]
            + ["images/s", "cores busy"])
    lines = [_row(head), _row(["---", "---", "---:"] + ["---:"] * (len(head) - 3))]
    for run in runs:
        minutes = [m for m, _ in run.curve]
        seconds = [60 * (b - a) for a, b in zip([0.0] + minutes, minutes)]
        cores = f"{run.cores:.2f}" if run.cores is not None else NOT_RECORDED
        name = f"{run.implementation}, {SHORT_PRECISION.get(run.precision, run.precision)}"
        lines.append(_row([name, run.machine, str(run.batch_size),
                           *(f"{s:.0f} s" for s in seconds),
                           *([""] * (epochs - len(seconds))),
                           f"{run.images_per_s:.0f}", cores]))
    return lines


def _points(a: float, b: float) -> str:
    """``a − b`` in percentage points, signed, from the accuracies as the tables print
    them (four decimals), so that the difference is that of the numbers shown."""
    return f"{100 * (round(a, 4) - round(b, 4)):+.2f}"


def gap_table(ours: Sequence[Run], reference: Sequence[Run]) -> list[str]:
    """Markdown lines: mean test accuracy of both at each TTA level, and ours minus theirs."""
    if not ours or not reference:
        return []
    lines = [_row(["TTA level", f"ours (mean of {len(ours)})",
                   f"reference (mean of {len(reference)})", "ours − reference"]),
             _row(["---", "---:", "---:", "---:"])]
    for level in LEVELS:
        # rounded as printed, so that the difference is that of the numbers shown
        a = round(statistics.mean(r.accuracy[level] for r in ours), 4)
        b = round(statistics.mean(r.accuracy[level] for r in reference), 4)
        lines.append(_row([level.replace("_", " + "), f"{a:.4f}", f"{b:.4f}",
                           f"{_points(a, b)} points"]))
    return lines


#: The profiles the page's table compares, ``profile_step_<name>.json``, left to right:
#: each column changes one thing from the one before it.
PROFILES = ("f32", "bf16", "bf16_fused_norm", "bf16_fused_norm_compiled_gelu")

#: The same step profiled on the AMX Xeon.
AMX_PROFILES = ("amx_f32", "amx_bf16", "amx_bf16_fused_norm_compiled_gelu")


def load_profiles(results: Path = RESULTS, names: Sequence[str] = PROFILES) -> list[dict]:
    """The recorded profiles of the recipe's step (``bench/profile_step.py``) named in ``names``."""
    paths = [results / f"profile_step_{name}.json" for name in names]
    return [read_json(p) for p in paths if p.exists()]


#: The groups of ops the profile tables show one by one; the others make one row.
PROFILE_GROUPS = ("3x3 convolutions", "batch norm", "GELU", "casts")


def profile_table(profiles: Sequence[dict], groups: Sequence[str] = PROFILE_GROUPS) -> list[str]:
    """Markdown lines: milliseconds per step of each group of ops, one column per profile.

    The groups named in ``groups`` have a row each, in that order, and every other
    group is summed into "everything else". The last rows give the step's wall time,
    its images per second and those of the net's convolutions alone, in the same
    precision.
    """
    if not profiles:
        return []
    batch = profiles[0]["args"]["batch_size"]
    lines = [_row([f"ms per step of {batch} images", *(p["label"] for p in profiles)]),
             _row(["---"] + ["---:"] * len(profiles))]
    for group in groups:
        lines.append(_row([group, *(f"{p['op_ms_per_step'].get(group, 0):.0f}"
                                    for p in profiles)]))
    lines.append(_row(["everything else", *(
        f"{sum(ms for g, ms in p['op_ms_per_step'].items() if g not in groups):.0f}"
        for p in profiles)]))
    lines.append(_row(["sum of the ops", *(f"{sum(p['op_ms_per_step'].values()):.0f}"
                                           for p in profiles)]))
    lines.append(_row(["**the step, wall clock**", *(f"**{p['step_ms']:.0f}**"
                                                     for p in profiles)]))
    lines.append(_row(["images/s, the step", *(f"{p['step_images_per_s']:.0f}"
                                               for p in profiles)]))
    lines.append(_row(["images/s, its convolutions alone",
                       *(f"{p['conv_images_per_s']:.0f}" for p in profiles)]))
    return lines


def _original(path: Path) -> dict | None:
    """The result file at ``path`` where it exists and its run read the original images."""
    if not path.exists():
        return None
    d = read_json(path)
    return d if (d.get("data") or {}).get("original") else None


def seed_cnn_points(results: Path = RESULTS, name: str = "seed_cnn.json") -> list[tuple[float, float]]:
    """(minutes of training, test accuracy) of each recorded 20-epoch run of
    ``bench/seed_cnn.py`` on the original images: the seed CNN's, or with
    ``name="vgg_bn.json"`` the VGG net's."""
    d = _original(results / name)  # the page draws runs on the original images only
    return [] if d is None else [(r["train_seconds"] / 60, r["test_accuracy"])
                                 for r in d["runs"]]


def seed_cnn_table(results: Path = RESULTS, name: str = "seed_cnn.json") -> list[str]:
    """Markdown lines: the 20-epoch runs of ``bench/seed_cnn.py`` on the original images
    (the seed CNN's, or with ``name="vgg_bn.json"`` the VGG net's), one row a seed, then
    their mean and standard deviation; no lines without such runs."""
    d = _original(results / name)
    if d is None or not d.get("runs"):
        return []
    cpu, runs = short_cpu(d.get("machine") or {}), d["runs"]
    lines = [_row(["seed", "CPU", "training", "images/s", "training accuracy",
                   "test accuracy"]),
             _row(["---:", "---", "---:", "---:", "---:", "---:"])]
    for r in runs:
        lines.append(_row([str(r["seed"]), cpu, f"{r['train_seconds'] / 60:.1f} min",
                           f"{r['images_per_second']:,.0f}", f"{r['train_accuracy']:.4f}",
                           f"{r['test_accuracy']:.4f}"]))
    if len(runs) > 1:
        test = [r["test_accuracy"] for r in runs]
        lines.append(_row([f"**mean of {len(runs)}**", "", "", "",
                           f"**{statistics.mean(r['train_accuracy'] for r in runs):.4f}**",
                           f"**{statistics.mean(test):.4f}** ± {statistics.stdev(test):.4f}"]))
    return lines


#: The two ways of ``bench/data_pipeline.py``, as its table names them.
PIPELINES = {"ours": "`load_cifar10` and `tf.data`", "seed": "the seed's way"}


def pipeline_table(results: Path = RESULTS, name: str = "data_pipeline.json") -> list[str]:
    """Markdown lines: time and peak memory of both ways of ``bench/data_pipeline.py``
    to turn the original images into batches; no lines without such a run."""
    d = _original(results / name)
    if d is None:
        return []
    cpu = short_cpu(d.get("machine") or {})
    lines = [_row(["way", "CPU", "time", "peak memory above imports",
                   "peak resident memory"]),
             _row(["---", "---", "---:", "---:", "---:"])]
    for key, way in PIPELINES.items():
        r = d[key]
        lines.append(_row([way, cpu, f"{r['seconds']:.1f} s",
                           f"{r['peak_above_imports_mib']:,.0f} MiB",
                           f"{r['peak_mib']:,.0f} MiB"]))
    return lines


def _precision(name: str, d: dict) -> str:
    """The precision a result file's run trained or timed in, as the tables name it."""
    if name.startswith("peer_airbench"):
        precision = "float32"  # the reference's half precision is float32 on the CPU
    else:
        precision = ((d.get("history") or {}).get("summary") or {}).get("precision") \
            or d.get("precision") or ""
    return SHORT_PRECISION.get(precision, precision) or NOT_RECORDED


def _data(data: dict) -> str:
    """The data a result file's run read, as the provenance table names it."""
    name, fmt, original = data.get("name"), data.get("format"), data.get("original")
    if not name:
        return NOT_RECORDED
    if original is False:
        return f"lossy {(fmt or '?').upper()} copy"
    if original:
        return f"original ({(fmt or '?').upper()})"
    return f"{name} ({fmt or '?'})"


def cores_busy(d: dict) -> float | None:
    """CPU seconds the run used per second of wall clock while it trained (2.00: both
    of two cores all the time; less: the run waited for them), where it recorded it."""
    records = (d.get("history") or {}).get("records") or []
    per_epoch = [r["cpu_per_wall"] for r in records if r.get("cpu_per_wall") is not None]
    cores = (statistics.mean(per_epoch) if per_epoch
             else d.get("cpu_per_wall_train94") or d.get("step_cores"))
    return float(cores) if cores else None


def _cores(d: dict) -> str:
    cores = cores_busy(d)
    return f"{cores:.2f}" if cores else NOT_RECORDED


#: The folder ``.ci/run`` and the page extract the original CIFAR-10 to, as recorded.
EXTRACTED = "cifar10-png/cifar10"


#: Options that say where a run writes, not what it computes: the table leaves them out.
WHERE_TO = ("--out", "--checkpoint-dir")


def _command(argv: Sequence[str]) -> str:
    """The recorded command line, without ``--out PATH`` (the file column names it) or
    ``--checkpoint-dir DIR`` (:data:`WHERE_TO`), and with ``"$CIFAR10_DIR"`` for the
    extracted original data's folder, as the page sets it."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in WHERE_TO:
            skip = True
        elif arg.rstrip("/").endswith(EXTRACTED):
            kept.append('"$CIFAR10_DIR"')
        elif not arg.startswith(tuple(f"{option}=" for option in WHERE_TO)):
            kept.append(arg)
    return f"`{' '.join(kept)}`" if kept else NOT_RECORDED


def _cell(*values: str) -> str:
    """Values that share a table cell, those recorded only."""
    return ", ".join(v for v in values if v != NOT_RECORDED) or NOT_RECORDED


def provenance_table(paths: Sequence[Path], root: Path = RESULTS) -> list[str]:
    """Markdown lines: where each result file came from, one row a file.

    The file (its path under ``root``, without ``.json``), with a word break after
    each underscore; the machine (CPU model in
    short, and generation) with its bfloat16 matrix extension; the cores the run kept
    busy (:func:`_cores`); the precision with the data (the original pixels or the
    lossy JPEG copy, otherwise its name and format); the commit (``*`` when the tree
    had uncommitted changes, ``†`` when it was recovered from the history after the
    run); and the command line without ``--out``.
    """
    lines = [_row(["file", "CPU, matrix extension", "cores busy", "precision, data", "commit",
                   "command"]),
             _row(["---", "---", "---:", "---", "---", "---"])]
    recovered = False
    for path in paths:
        d = read_json(path)
        machine = d.get("machine") or {}
        cpu = short_cpu(machine, generation=True)
        commit = (d.get("commit") or NOT_RECORDED)[:10]
        if d.get("dirty"):
            commit += "*"
        if d.get("commit_note"):
            commit, recovered = commit + " †", True
        # <wbr>: the browser may break a long file name after an underscore
        name = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        lines.append(_row([name.with_suffix("").as_posix().replace("_", "_<wbr>"),
                           _cell(cpu, machine.get("matrix_extensions") or NOT_RECORDED),
                           _cores(d), _cell(_precision(path.name, d), _data(d.get("data") or {})),
                           commit, _command(d.get("argv") or [])]))
    lines += ["", f"{NOT_RECORDED}: not recorded by the run."]
    if recovered:
        lines[-1] += (" †: the commit that added the file, recovered from the history: "
                      "the run did not record its own.")
    return lines


def lossy_copy_table(ours: Sequence[Run], reference: Sequence[Run]) -> list[str]:
    """Markdown lines: each implementation's mean test accuracy with flip and shift TTA
    on the original images and on the lossy JPEG copy, at the same 9.9 epochs, and the
    difference: what the copy costs. ``ours`` and ``reference`` hold the runs on both
    data (:func:`equal_epoch_runs` with ``original=None``); an implementation with no
    run on one of them has no row."""
    lines = [_row(["9.9 epochs, flip + shift TTA", "original images", "lossy JPEG copy",
                   "what the copy costs"]),
             _row(["---", "---:", "---:", "---:"])]
    for runs in (ours, reference):
        means = []
        for original in (True, False):
            kept = [r.accuracy["flip_shift"] for r in runs if r.original is original]
            # rounded as printed, so that the difference is that of the numbers shown
            means.append((round(statistics.mean(kept), 4), len(kept)) if kept else None)
        if None in means:
            continue
        (a, n), (b, m) = means
        lines.append(_row([runs[0].implementation, f"{a:.4f} ({n} {_seeds(n)})",
                           f"{b:.4f} ({m} {_seeds(m)})", f"{_points(b, a)} points"]))
    return lines if len(lines) > 2 else []


def _seeds(n: int) -> str:
    return "seed" if n == 1 else "seeds"


def page_files(results: Path = RESULTS) -> list[Path]:
    """The result files the benchmarks page quotes, in the page's order: the rows of
    its provenance table."""
    ours, reference, _ = equal_epoch_runs(results, original=None)
    names = [run.file for run in ours + reference]
    names += [f"profile_step_{name}.json" for name in PROFILES + AMX_PROFILES]
    names += list(HALF_HOUR_RUNS) + list(FIGURE_RUNS) + list(SPEED_RUNS)
    names += [name for pair in CPU_REPEATS for name in pair]
    names += [name for name in ("seed_cnn.json", "vgg_bn.json", "data_pipeline.json")
              if _original(results / name) is not None]
    return [results / name for name in dict.fromkeys(names) if (results / name).exists()]


def page_tables(results: Path = RESULTS) -> list[tuple[str, list[str]]]:
    """Every table of the benchmarks page, named as its markers there name it, in order."""
    ours, reference, _ = equal_epoch_runs(results, original=True)
    both = equal_epoch_runs(results, original=None)
    tables = [("provenance", provenance_table(page_files(results))),
              ("runs", runs_table(ours + reference)),
              ("gap", gap_table(ours, reference)),
              ("speed", speed_table([load_run(results / name) for name in SPEED_RUNS
                                     if (results / name).exists()])),
              ("cpu repeat", repeat_table([(load_run(results / a), load_run(results / b))
                                          for a, b in CPU_REPEATS
                                          if (results / a).exists() and (results / b).exists()])),
              ("lossy copy", lossy_copy_table(both[0], both[1])),
              ("half hour", runs_table([load_ours(results / name) for name in HALF_HOUR_RUNS
                                        if (results / name).exists()])),
              ("seed cnn", seed_cnn_table(results)),
              ("vgg", seed_cnn_table(results, "vgg_bn.json")),
              ("pipeline", pipeline_table(results)),
              ("profile", profile_table(load_profiles(results))),
              ("amx profile", profile_table(load_profiles(results, AMX_PROFILES)))]
    return [(name, lines) for name, lines in tables if len(lines) > 2]


def time_to_accuracy(runs: Sequence[Run], seed_cnn: Sequence[tuple[float, float]] = (),
                     title: str = ""):
    """Test accuracy after each epoch against minutes of training, one line per run, on
    one machine (one colour and one key entry per recipe, shared by its seeds); the seed
    CNN's runs (``seed_cnn``) are drawn at their end only."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(PAGE_WIDTH, 4.8), layout="constrained")
    ax = fig.subplots()
    colours: dict[tuple[str, str, float, str], str] = {}
    for run in runs:
        key = (run.implementation, run.precision, run.epochs, run.change)
        label = None
        if key not in colours:
            colours[key] = ("C0", "C3", "C9", "C1", "C4")[len(colours) % 5]
            label = (f"{run.implementation}, {SHORT_PRECISION.get(run.precision, run.precision)}"
                     f", {run.epochs:g} epochs")
            if run.change:
                label += f",\n{run.change}"
        minutes, accuracy = zip(*run.curve)
        ax.plot(minutes, accuracy, marker="o", markersize=3, color=colours[key], label=label)
    if seed_cnn:
        minutes, accuracy = zip(*seed_cnn)
        ax.plot(minutes, accuracy, "s", color="C2", label="seed CNN, 20 epochs (end)")
    ax.set_title(title)
    ax.set_xlabel("minutes of training (2 CPU cores)")
    ax.set_ylabel("test accuracy (no TTA)")
    ax.set_ylim(0.5, 1.0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    # under the panel, where it hides no point
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return fig


def fill_page(text: str, tables: Sequence[tuple[str, list[str]]]) -> str:
    """``text`` (the benchmarks page) with each table between its two markers replaced
    by ``tables``' lines; a table whose markers the page lacks raises ``ValueError``."""
    for name, lines in tables:
        start, end = f"<!-- bench/report.py: {name} -->", f"<!-- end of {name} -->"
        if start not in text or end not in text:
            raise ValueError(f"the page has no markers for the {name} table: add "
                             f"{start!r} and {end!r} where it belongs")
        head, rest = text.split(start, 1)
        text = head + start + "\n\n" + "\n".join(lines) + "\n\n" + end + rest.split(end, 1)[1]
    return text


def main(argv: list[str] | None = None) -> int:
    """Print the page's tables between the markers the page has around them (with
    ``--page``, write them into the page there); with ``--figure``, also draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", type=Path, help="write the time-to-accuracy PNG here")
    parser.add_argument("--page", type=Path,
                        help="write the tables into this page (chapters/benchmarks.md)")
    args = parser.parse_args(argv)
    tables = page_tables()
    if args.page:
        try:
            args.page.write_text(fill_page(args.page.read_text(encoding="utf-8"), tables),
                                 encoding="utf-8")
        except (OSError, ValueError) as err:
            parser.error(str(err))
        print(f"wrote {len(tables)} tables into {args.page}")
    else:
        for name, lines in tables:
            print(f"<!-- bench/report.py: {name} -->\n")
            print("\n".join(lines))
            print(f"\n<!-- end of {name} -->\n")
    if args.figure:
        if not FIGURE_RUNS:
            parser.error("no run is chosen for the figure yet (FIGURE_RUNS)")
        runs = [load_run(RESULTS / name) for name in FIGURE_RUNS]
        cpu = read_json(RESULTS / FIGURE_RUNS[0]).get("machine") or {}
        fig = time_to_accuracy(runs, seed_cnn_points(), short_cpu(cpu))
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=150, bbox_inches="tight")
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
