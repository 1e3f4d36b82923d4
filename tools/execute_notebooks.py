"""Execute chapters in full mode and store their outputs (the book shows these).

Usage::

    CIFAR10_DIR=path/to/cifar10-png/cifar10 python tools/execute_notebooks.py chapters/07_seed_cnn.ipynb

The data folder is the original CIFAR-10 as ``.ci/run`` extracts it from
``../shared/data/cifar10-png.zip``.

Each notebook runs in its own folder with no cell time limit. TensorFlow's C++
start-up notices are not captured (``capture_fd_output=False``), exactly as under
``pytest --nbval``, so stored and re-run outputs agree. After the run, the outputs
are checked for machine paths; a notebook that shows one is not saved.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

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


def execute(path: Path, kernel: str = "python3") -> float:
    """Execute one notebook in place; return the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=None,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=["--IPKernelApp.capture_fd_output=False"],
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    merge_streams(nb)
    leaks = machine_paths(nb)
    if leaks:
        raise SystemExit(f"{path}: outputs show machine paths {sorted(set(leaks))[:5]}; not saved")
    nbformat.write(nb, path)
    return seconds


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    if os.environ.get("CIFAR_TUTORIAL_SMOKE"):
        print("refusing to store smoke-mode outputs: unset CIFAR_TUTORIAL_SMOKE", file=sys.stderr)
        return 2
    for nb in args.notebooks:
        seconds = execute(nb)
        print(f"{nb}: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
