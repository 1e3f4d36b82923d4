"""Benchmark the reference: airbench94 (PyPI ``airbench`` 0.1.8) on this CPU and our data.

Set-up, once, in an environment of its own (PyTorch is not part of the book's)::

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install -c constraints.txt -e ".[peer]"

(``torch==2.13.0`` resolves to its CPU build from this project's machines' wheel
cache; elsewhere take the CPU wheel from PyTorch's own index.) Then, one run::

    CIFAR10_DIR=path/to/cifar10-png .venv-peer/bin/python bench/peer_airbench.py \\
        --seed 0 --out bench/results/peer_airbench_seed0.json

A check on a few images (write it outside ``bench/results/``)::

    .venv-peer/bin/python bench/peer_airbench.py --data-dir path/to/cifar10-png \\
        --limit-train 2048 --limit-test 1000 --epochs 0.5 --out /tmp/peer_check.json

The images are read with :func:`cifar_tutorial.data.read_image_folder`, as
``bench/fast_recipe.py`` reads them, so both benchmarks train and test on the same
pixels. ``airbench.train94`` then runs with its own hyperparameters and training
logic (9.9 epochs by default, batches of 1,024, its own per-epoch evaluation and
test-time augmentation). The library was written for a CUDA GPU in float16; only
its surroundings are adapted, at run time, by :func:`cpu_float32`:

- its data: ``CifarLoader`` loads ``train.pt``/``test.pt`` from a folder when they
  exist, so the images are saved there (:func:`loader_arrays`) and every loader the
  library makes is pointed at that folder, on the CPU;
- the device and precision: ``.cuda()`` on a module returns it unchanged and
  ``.half()`` (tensors and modules) gives float32, since float16 on a CPU is
  emulated; bfloat16 is not offered because the library's Lookahead averages only
  float16 and float32 weights;
- its timer: ``torch.cuda.Event`` becomes a wall-clock event and
  ``torch.cuda.synchronize`` does nothing (CPU work is synchronous);
- ``torchvision``, which it imports for its download and ``transforms.Normalize``:
  where it is not installed (PyPI's wheel is a CUDA build), a small module with
  that one transform stands in, and the download path says how to fix a missing file.

It prints the library's own table (one row an epoch) and writes, atomically, a JSON
file: the accuracy after every epoch, the final test accuracy at each of airbench's
test-time augmentation levels (0 none, 1 mirror, 2 mirror and translate), the
training time (the library's timer: whitening initialization and training steps,
not the evaluations) and images per second, and where the run came from
(``bench/_common.py``'s ``run_metadata``: commit, machine and its matrix extension,
versions, data). A run is not resumable: the library keeps no
checkpoints, and an interrupted run starts again from the beginning.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import os
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # a test loads this file by its path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    describe_cpu,
    git_state,
    load_average,
    portable_args,
    run_metadata,
    write_json,
)

from cifar_tutorial.errors import CifarTutorialError, UsageError  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

AIRBENCH_VERSION = "0.1.8"
INSTALL_HINT = (
    'create it with: python3 -m venv .venv-peer && .venv-peer/bin/pip install '
    '-c constraints.txt -e ".[peer]", then run this script with .venv-peer/bin/python'
)
TABLE_KEYS = ("epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc", "total_time_seconds")


def loader_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    limit: int | None = None,
) -> dict[str, Any]:
    """Arrange one split as airbench's ``CifarLoader`` expects its ``train.pt``/``test.pt``.

    Parameters
    ----------
    images : ndarray
        ``uint8`` images, ``(n, 32, 32, 3)`` (height, width, channels), as
        :func:`cifar_tutorial.data.read_image_folder` returns them.
    labels : ndarray
        Integer labels, ``(n,)``, in ``[0, len(classes))``.
    classes : sequence of str
        The class names in label order.
    limit : int, optional
        Keep only the first ``limit`` images (for a quick check).

    Returns
    -------
    dict
        ``images`` (``uint8``, NHWC, contiguous), ``labels`` (``int64``, as the
        library's cross-entropy needs) and ``classes`` (a list), still NumPy: the
        caller turns the arrays into tensors.

    Raises
    ------
    ValueError
        If the shapes, the dtype, the labels or ``limit`` do not fit.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images must be (n, 32, 32, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels must lie in [0, {len(classes)}), got {labels.min()}..{labels.max()}")
    if limit is not None:
        if not 0 < limit <= len(images):
            raise ValueError(f"limit must be in 1..{len(images)}, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return {
        "images": np.ascontiguousarray(images),
        "labels": labels.astype(np.int64),
        "classes": list(classes),
    }


def describe_machine(threads: int) -> dict[str, Any]:
    """CPU model, cores, matrix extensions and platform of this machine, and torch's threads."""
    return {**describe_cpu(), "torch_threads": threads}


class WallClockEvent:
    """Stands in for ``torch.cuda.Event(enable_timing=True)`` on the CPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.time: float | None = None

    def record(self, *args: Any, **kwargs: Any) -> None:
        self.time = time.perf_counter()

    def elapsed_time(self, end: WallClockEvent) -> float:
        """Milliseconds from this event to ``end``, as CUDA events report them."""
        assert self.time is not None and end.time is not None, "event not recorded"
        return 1e3 * (end.time - self.time)

    def synchronize(self) -> None:
        pass


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """A ``torchvision`` with only what airbench uses once its data files exist."""
    import torch

    class Normalize:
        """Per-channel ``(x - mean) / std`` of an NCHW float tensor (torchvision's semantics)."""

        def __init__(self, mean: Any, std: Any) -> None:
            self.mean, self.std = mean, std

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            return (x - mean) / std

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "airbench tried to download CIFAR-10: its train.pt/test.pt were not found. "
            "Run it through bench/peer_airbench.py, which writes them first."
        )

    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    datasets = types.ModuleType("torchvision.datasets")
    transforms.Normalize = Normalize  # type: ignore[attr-defined]
    datasets.CIFAR10 = no_download  # type: ignore[attr-defined]
    root.transforms, root.datasets = transforms, datasets  # type: ignore[attr-defined]
    root.__version__ = "stand-in (transforms.Normalize only)"  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.transforms": transforms, "torchvision.datasets": datasets}


def require_packages() -> None:
    """Check, without importing them, that PyTorch and airbench 0.1.8 are installed."""
    from importlib.metadata import version

    for name in ("torch", "airbench"):
        if importlib.util.find_spec(name) is None:
            raise UsageError(f"{name} is not installed in this environment; {INSTALL_HINT}")
    found = version("airbench")
    if found != AIRBENCH_VERSION:
        raise UsageError(
            f"airbench {found} is installed; this benchmark adapts version {AIRBENCH_VERSION}: "
            f"pip install airbench=={AIRBENCH_VERSION}"
        )


def import_airbench() -> tuple[types.ModuleType, str]:
    """Import airbench, with a ``torchvision`` stand-in where none is installed.

    Returns the package and the torchvision version it got (or the stand-in's name).
    """
    if importlib.util.find_spec("torchvision") is None:
        sys.modules.update(_torchvision_stand_in())
    import airbench
    import torchvision

    return airbench, str(torchvision.__version__)


@contextlib.contextmanager
def cpu_float32(airbench: types.ModuleType, data_root: Path, table: list[dict[str, Any]]) -> Iterator[None]:
    """Run airbench on the CPU in float32 on the files in ``data_root``; restore everything after.

    Every ``CifarLoader`` the library makes (its own train and test loaders
    included) reads ``data_root/train.pt``/``test.pt`` onto the CPU; ``.half()``
    gives float32, ``.cuda()`` is a no-op and CUDA timing events are wall-clock
    ones. Each row the library prints is also appended to ``table`` with the
    process's CPU time and the wall clock, so per-epoch figures can be derived.
    """
    import torch
    from airbench import lib_airbench94, utils

    original_loader = utils.CifarLoader

    class CpuCifarLoader(original_loader):  # type: ignore[misc, valid-type]
        def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
            kwargs["gpu"] = "cpu"
            super().__init__(str(data_root), *args, **kwargs)

    original_print = utils.print_training_details

    def recording_print(variables: dict[str, Any], is_final_entry: bool) -> None:
        row = {key: variables.get(key) for key in TABLE_KEYS}
        row["steps"] = variables.get("current_steps")
        row["final"] = is_final_entry
        row["wall_s"] = time.perf_counter()
        row["cpu_s"] = time.process_time()
        table.append(row)
        original_print(variables, is_final_entry)

    def module_half(self: torch.nn.Module) -> torch.nn.Module:
        return self.float()

    def module_cuda(self: torch.nn.Module, device: Any = None) -> torch.nn.Module:
        return self

    def tensor_half(self: torch.Tensor, memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
        return self.float(memory_format=memory_format)

    patches = [
        (airbench, "CifarLoader", CpuCifarLoader),
        (utils, "CifarLoader", CpuCifarLoader),
        (lib_airbench94, "CifarLoader", CpuCifarLoader),
        (utils, "print_training_details", recording_print),
        (torch.nn.Module, "half", module_half),
        (torch.nn.Module, "cuda", module_cuda),
        (torch.Tensor, "half", tensor_half),
        (torch.cuda, "Event", WallClockEvent),
        (torch.cuda, "synchronize", lambda *args, **kwargs: None),
    ]
    missing = object()
    saved = [(owner, name, vars(owner).get(name, missing)) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is missing:  # inherited (Tensor.half comes from the C base class)
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def epoch_rows(table: list[dict[str, Any]], start_wall: float, start_cpu: float,
               batch_size: int) -> list[dict[str, Any]]:
    """Per-epoch figures from the library's rows (its cumulative timer, steps, accuracy).

    The first epoch's time includes the whitening layer's initialization, which the
    library times with it. ``cpu_per_wall`` is the process's CPU seconds per wall
    second since the previous row (about the core count on an otherwise idle machine).
    """
    rows, prev_time, prev_steps = [], 0.0, 0
    prev_wall, prev_cpu = start_wall, start_cpu
    for row in table:
        if row["final"]:
            continue
        seconds = row["total_time_seconds"] - prev_time
        steps = row["steps"] - prev_steps
        wall = row["wall_s"] - prev_wall
        rows.append({
            "epoch": row["epoch"] + 1,
            "train_loss": row["train_loss"],
            "train_acc": row["train_acc"],
            "test_acc": row["val_acc"],
            "steps": steps,
            "train_time_s": seconds,
            "images_per_s": steps * batch_size / seconds if seconds > 0 else None,
            "cpu_per_wall": (row["cpu_s"] - prev_cpu) / wall if wall > 0 else None,
        })
        prev_time, prev_steps = row["total_time_seconds"], row["steps"]
        prev_wall, prev_cpu = row["wall_s"], row["cpu_s"]
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"),
                        help="image folder with train/ and test/ (default: $CIFAR10_DIR)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before training")
    parser.add_argument("--epochs", type=float, default=None,
                        help="training epochs (default: the library's own, 9.9)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: every core this process may use)")
    parser.add_argument("--limit-train", type=int, default=None, metavar="N",
                        help="train on the first N images only (a check; needs --out)")
    parser.add_argument("--limit-test", type=int, default=None, metavar="N",
                        help="test on the first N images only (a check; needs --out)")
    parser.add_argument("--out", default=None,
                        help="JSON results (default: bench/results/peer_airbench[_<E>ep]_seed<S>.json)")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give the image folder with --data-dir or CIFAR10_DIR")
    if args.epochs is not None and args.epochs <= 0:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.limit_train is not None and args.limit_train < 1024:
        parser.error(f"--limit-train must be at least 1024 (one of airbench's batches), got {args.limit_train}")
    if args.limit_test is not None and args.limit_test < 1:
        parser.error(f"--limit-test must be at least 1, got {args.limit_test}")
    if (args.limit_train or args.limit_test) and not args.out:
        parser.error("a run with --limit-train/--limit-test is a check: give --out outside bench/results/")
    return args


def default_out(epochs: float | None, seed: int) -> Path:
    tag = "" if epochs is None else f"_{epochs:g}ep"
    return Path("bench") / "results" / f"peer_airbench{tag}_seed{seed}.json"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Read the data, train airbench94 once and evaluate it; return the results."""
    from cifar_tutorial.data import read_image_folder

    require_packages()
    started = git_state()  # the code this run trains with, whatever is committed later
    t0 = time.perf_counter()
    # The layout is checked first: a wrong folder fails in a fraction of a second.
    (x_train, y_train), (x_test, y_test), classes = read_image_folder(args.data_dir)
    try:
        splits = {
            "train": loader_arrays(x_train, y_train, classes, args.limit_train),
            "test": loader_arrays(x_test, y_test, classes, args.limit_test),
        }
    except ValueError as err:
        raise UsageError(str(err)) from None
    del x_train, y_train, x_test, y_test
    load_time = time.perf_counter() - t0
    n_train, n_test = len(splits["train"]["labels"]), len(splits["test"]["labels"])
    print(f"loaded {n_train} train / {n_test} test images in {load_time:.1f}s", flush=True)
    airbench, torchvision_version = import_airbench()
    import torch
    from airbench import lib_airbench94

    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    hyp = copy.deepcopy(lib_airbench94.hyp)
    batch_size = hyp["opt"]["batch_size"]
    epochs = hyp["opt"]["train_epochs"] if args.epochs is None else args.epochs
    table: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory(prefix="peer_airbench_") as tmp:
        data_root = Path(tmp)
        for split, arrays in splits.items():
            torch.save({
                "images": torch.from_numpy(arrays["images"]),
                "labels": torch.from_numpy(arrays["labels"]),
                "classes": arrays["classes"],
            }, data_root / f"{split}.pt")
        del splits
        load_before = load_average()
        with cpu_float32(airbench, data_root, table):
            torch.manual_seed(args.seed)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            model = airbench.train94(epochs=epochs)
            wall = time.perf_counter() - start_wall
            cpu = time.process_time() - start_cpu
            load_after = load_average()
            test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            eval_start = time.perf_counter()
            test_acc = {str(level): airbench.evaluate(model, test_loader, tta_level=level) for level in (0, 1, 2)}
            eval_time = time.perf_counter() - eval_start

    final = [row for row in table if row["final"]]
    trained = [row for row in table if not row["final"]]
    if not final or not trained:
        raise RuntimeError("airbench printed no epoch rows; was it run with verbose=True?")
    steps = trained[-1]["steps"]
    train_time = trained[-1]["total_time_seconds"]  # whitening initialization and training steps
    epochs_table = epoch_rows(table, start_wall, start_cpu, batch_size)
    print(f"training time (library's timer): {train_time:.1f}s ({train_time / 60:.2f} min), "
          f"{steps * batch_size / train_time:.0f} img/s over {steps} steps of {batch_size}")
    for level, acc in test_acc.items():
        print(f"final test accuracy, TTA level {level}: {acc:.4f}")

    meta = run_metadata(args.data_dir, git=started)
    return {
        **meta,
        "benchmark": "airbench94 (airbench.train94), the reference implementation, on the CPU",
        "args": portable_args(args),
        "hyperparameters": hyp,
        "epochs": epochs,
        "adaptations": [
            "device: CPU (Module.cuda is a no-op, CifarLoader loads onto the CPU)",
            "precision: float32 (Tensor.half and Module.half give float32)",
            "timer: wall-clock events for torch.cuda.Event",
            "data: train.pt/test.pt written from cifar_tutorial.data.read_image_folder",
            f"torchvision: {torchvision_version}",
        ],
        "seed": args.seed,
        "data": {**meta["data"], "train_images": n_train, "test_images": n_test,
                 "load_time_s": load_time},
        "per_epoch": epochs_table,
        "test_acc": test_acc,
        "test_acc_library_final": {"0": trained[-1]["val_acc"], str(hyp["net"]["tta_level"]): final[-1]["tta_val_acc"]},
        "train_steps": steps,
        "batch_size": batch_size,
        "train_images_seen": steps * batch_size,
        "train_time_s": train_time,
        "images_per_s": steps * batch_size / train_time,
        "time_with_final_tta_s": final[-1]["total_time_seconds"],
        "wall_time_train94_s": wall,
        "cpu_per_wall_train94": cpu / wall if wall > 0 else None,
        "eval_time_three_levels_s": eval_time,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "machine": describe_machine(threads),
        # tensorflow, when installed, decoded the images
        "versions": {**meta["versions"], "airbench": AIRBENCH_VERSION,
                     "torchvision": torchvision_version},
        "resumable": False,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the reference once and write its JSON results; 2 on a usage problem."""
    args = parse_args(argv)
    out = Path(args.out) if args.out else default_out(args.epochs, args.seed)
    try:
        result = run(args)
    except CifarTutorialError as err:  # a usage or data problem: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C); nothing was written: a run cannot resume, start it again",
              file=sys.stderr)
        return 130
    write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
