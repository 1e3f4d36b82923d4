"""Execute chapters in full mode and store their outputs (the book shows these).

Usage::

    CIFAR10_DIR=path/to/cifar10-png/cifar10 python tools/execute_notebooks.py chapters/07_seed_cnn.ipynb

The data folder is the original CIFAR-10 as ``.ci/run`` extracts it from
``../shared/data/cifar10-png.zip``.

Each notebook runs in its own folder with no cell time limit. Then the
chapter's setup cell, which states how long the full run takes
(``runtime.describe_run(minutes)``), gets the minutes just measured and runs
again on its own, in a fresh kernel: it only imports and prints, so its output
is what it would have printed first. ``--setup-only MINUTES`` does only that
last step, for a run timed elsewhere. ``--reading-cells I,J`` runs, in a fresh
kernel, the setup cell and then only the cells numbered I, J (0-based, in order),
and stores their outputs: it is for cells that only read recorded files (chapter
9's benchmark results), whose outputs a full run would print the same. The
setup cell keeps its stored output, and the code cells are numbered again in
order, as a full run numbers them. TensorFlow's C++
start-up notices are not captured (``capture_fd_output=False``), exactly as under
``pytest --nbval``, so stored and re-run outputs agree. After the run, the outputs
are checked for machine paths; a notebook that shows one is not saved.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

RUN_LENGTH = re.compile(r"describe_run\(\s*\d+(?:\.\d+)?(?:\s*,\s*\"[\w-]+\")?\s*\)")
PATH_PATTERN = re.compile(r"(/(?:work|root|home|tmp|Users|opt)/[\w.\-/]+)")


def machine_paths(nb: nbformat.NotebookNode) -> list[str]:
    """Return machine paths found in a notebook's outputs."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")]
            texts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            texts += out.get("traceback", [])
            for t in texts:
                found += PATH_PATTERN.findall(t if isinstance(t, str) else "".join(t))
    return found


def merge_streams(nb: nbformat.NotebookNode) -> None:
    """Join consecutive stdout (or stderr) outputs of a cell into one, as nbval does."""
    for cell in nb.cells:
        merged: list = []
        for out in cell.get("outputs", []):
            if (merged and out.get("output_type") == "stream"
                    and merged[-1].get("output_type") == "stream"
                    and merged[-1].get("name") == out.get("name")):
                merged[-1]["text"] += out["text"]
            else:
                merged.append(out)
        if "outputs" in cell:
            cell["outputs"] = merged


def run(nb: nbformat.NotebookNode, path: Path, kernel: str = "python3") -> float:
    """Execute ``nb`` in a fresh kernel in ``path``'s folder; return the wall time in seconds."""
    client = NotebookClient(
        nb,
        timeout=None,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
    )
    start = time.perf_counter()
    client.execute()
    merge_streams(nb)
    leaks = machine_paths(nb)
    if leaks:
        kept = path.with_suffix(".rejected.ipynb")
        nbformat.write(nb, kept)
        raise SystemExit(f"{path}: outputs show machine paths {sorted(set(leaks))[:5]}; "
                         f"not saved there, but in {kept.name} (ignored by git) to mend")
    return time.perf_counter() - start


def setup_index(nb: nbformat.NotebookNode) -> int | None:
    """The index of the chapter's setup cell, its first code cell (None without one)."""
    return next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), None)


def state_run_length(path: Path, minutes: float, measured_on: str) -> bool:
    """Put ``minutes`` into the setup cell's ``describe_run`` call and run that cell again.

    Returns False, changing nothing, when the first code cell calls no ``describe_run``.
    """
    nb = nbformat.read(path, as_version=4)
    index = setup_index(nb)
    if index is None or not RUN_LENGTH.search(nb.cells[index].source):
        return False
    value = f"{minutes:.1f}" if minutes < 1 else f"{round(minutes)}"
    machine = "" if measured_on == "epyc-zen3" else f', "{measured_on}"'
    setup = nb.cells[index]
    setup.source = RUN_LENGTH.sub(f"describe_run({value}{machine})", setup.source, count=1)
    alone = nbformat.v4.new_notebook(cells=[setup], metadata=nb.metadata)
    run(alone, path)
    nb.cells[index] = alone.cells[0]
    nbformat.write(nb, path)
    return True


def run_reading_cells(path: Path, indices: list[int]) -> None:
    """Run the setup cell and the code cells ``indices`` of ``path``; store the latter's outputs."""
    nb = nbformat.read(path, as_version=4)
    setup = setup_index(nb)
    for i in indices:
        if setup is None or i <= setup or i >= len(nb.cells) or nb.cells[i].cell_type != "code":
            raise SystemExit(f"{path}: cell {i} is not a code cell after the setup cell")
    chosen = [setup, *sorted(indices)]
    alone = nbformat.v4.new_notebook(cells=[copy.deepcopy(nb.cells[i]) for i in chosen],
                                     metadata=nb.metadata)
    run(alone, path)
    for i, cell in zip(chosen[1:], alone.cells[1:]):
        nb.cells[i].outputs = cell.outputs
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = count
    nbformat.write(nb, path)


def execute(path: Path, measured_on: str, extra_minutes: float = 0.0) -> float:
    """Execute one notebook in place, then state its run length; return the seconds."""
    nb = nbformat.read(path, as_version=4)
    seconds = run(nb, path)
    nbformat.write(nb, path)
    state_run_length(path, seconds / 60 + extra_minutes, measured_on)
    return seconds


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--measured-on", default="epyc-zen3",
                        help="the key of runtime.MACHINES this machine is [default: %(default)s]")
    parser.add_argument("--extra-minutes", type=float, default=0.0, metavar="M",
                        help="minutes of training the chapter would do first if its models "
                             "were missing (they were trained beforehand)")
    parser.add_argument("--setup-only", type=float, metavar="MINUTES",
                        help="only state MINUTES in the setup cell and run that cell again")
    parser.add_argument("--reading-cells", metavar="I,J",
                        type=lambda text: [int(i) for i in text.split(",")],
                        help="only run the setup cell and these cells, which read recorded "
                             "files, and store their outputs")
    args = parser.parse_args()
    if os.environ.get("CIFAR_TUTORIAL_SMOKE"):
        print("refusing to store smoke-mode outputs: unset CIFAR_TUTORIAL_SMOKE", file=sys.stderr)
        return 2
    for nb in args.notebooks:
        if args.reading_cells:
            run_reading_cells(nb, args.reading_cells)
            print(f"{nb}: cells {args.reading_cells} ran again")
            continue
        if args.setup_only is not None:
            done = state_run_length(nb, args.setup_only, args.measured_on)
            print(f"{nb}: setup cell {'ran again' if done else 'calls no describe_run'}")
            continue
        seconds = execute(nb, args.measured_on, args.extra_minutes)
        print(f"{nb}: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
