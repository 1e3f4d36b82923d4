"""Benchmark: the seed article's CNN (or the VGG net), 20 epochs on all 50,000 training images.

Runs ``python -m cifar_tutorial train --model seed --val-fraction 0`` once per seed
(Adam 1e-4, batch 32, as in the article) and summarizes each run's
``metrics.json`` and ``history.json``: test accuracy, training time, time per epoch
and images per second (first epoch, which includes graph tracing, reported apart).

    CIFAR10_DIR=path/to/cifar10-png python bench/seed_cnn.py --seeds 0 1 2 \
        --out bench/results/seed_cnn.json

``CIFAR10_DIR`` names the original CIFAR-10 as PNG files
(``train/<class>/*.png``). ``--model vgg_bn --augment`` times chapter 9's VGG net
the same way (Adam 1e-3, batch 32, random flips and shifts), into
``bench/results/vgg_bn.json``. The file holds the runs under ``"runs"`` and where
they came from (``bench/_common.py``'s ``run_metadata``: commit, machine, data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import portable_args, run_metadata, write_json


def run(seed: int, epochs: int, out: Path, model: str = "seed", augment: bool = False) -> dict:
    """Train one seed with the command line and read back its figures."""
    cmd = [sys.executable, "-m", "cifar_tutorial", "train", "--model", model, "--epochs",
           str(epochs), "--val-fraction", "0", "--seed", str(seed), "--out", str(out), "--no-resume"]
    if augment:
        cmd.append("--augment")
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    records = json.loads((out / "history.json").read_text())["records"]
    seconds = [r["seconds"] for r in records]
    n = metrics["sizes"]["train"]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {
        "model": model,
        "augment": augment,
        "seed": seed,
        "epochs": len(records),
        "test_accuracy": metrics["test_accuracy"],
        "train_accuracy": records[-1]["accuracy"],
        "train_seconds": sum(seconds),
        "first_epoch_seconds": seconds[0],
        "median_epoch_seconds": steady,
        "images_per_second": n / steady,
        "device": metrics["device"],
        "source": metrics["source"],
    }


def main() -> int:
    """Run the seeds, print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--model", choices=["seed", "vgg_bn"], default="seed")
    parser.add_argument("--augment", action="store_true", help="random flips and shifts")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if not os.environ.get("CIFAR10_DIR"):
        parser.error("set CIFAR10_DIR to the image folder")
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(s, args.epochs, Path(tmp) / f"seed{s}", args.model, args.augment)
                   for s in args.seeds]
    print(f"\n{'seed':>4} {'test acc':>9} {'train acc':>10} {'train min':>10} {'s/epoch':>8} {'img/s':>7}")
    for r in results:
        print(f"{r['seed']:>4} {r['test_accuracy']:9.4f} {r['train_accuracy']:10.4f} "
              f"{r['train_seconds'] / 60:10.2f} {r['median_epoch_seconds']:8.1f} {r['images_per_second']:7.0f}")
    if args.out:
        write_json(args.out, {**run_metadata(os.environ["CIFAR10_DIR"]), "args": portable_args(args),
                              "runs": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
