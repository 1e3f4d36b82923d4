"""Benchmark: all 60,000 CIFAR-10 images into ready-to-train batches, two ways.

``seed``
    The seed article's way: Python list comprehensions over the TFDS examples (one
    pass for the images, one for the labels), ``tf.convert_to_tensor(...,
    dtype=tf.float64) / 256`` and ``tf.one_hot``.
``ours``
    ``cifar_tutorial.data.load_cifar10`` (parallel decoding into uint8 arrays) and one
    full pass over the ``tf.data`` pipelines that scale each batch to float32 in
    [0, 1] and one-hot encode the labels.

Both read the same image folder. Each runs in a fresh process, so that its peak
resident memory (``ru_maxrss``) is its own; the script reports the time from the
start of loading to the last ready batch, and the peak memory above the process's
size after importing TensorFlow.

    python bench/data_pipeline.py --data-dir path/to/cifar10-png \
        --out bench/results/data_pipeline.json

The image folder holds the original CIFAR-10 as PNG files (``train/<class>/*.png``);
the JSON names it, the machine and the commit (``bench/_common.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _common import run_metadata, write_json


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_seed(root: str, batch_size: int) -> dict:
    """The seed article's loading code, on ``tfds.ImageFolder`` instead of a download."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    base = _rss_mib()
    start = time.perf_counter()
    builder = tfds.ImageFolder(root)
    num_classes = builder.info.features["label"].num_classes
    train_ds, test_ds = builder.as_dataset(split=["train", "test"], shuffle_files=True, as_supervised=True)
    train_x = [example.numpy() for example, label in train_ds]
    train_y = [label.numpy() for example, label in train_ds]
    test_x = [example.numpy() for example, label in test_ds]
    test_y = [label.numpy() for example, label in test_ds]
    train_x_ds = tf.convert_to_tensor(train_x, dtype=tf.float64) / 256
    train_y_ds = tf.one_hot(tf.convert_to_tensor(train_y, dtype=tf.int64), depth=num_classes)
    test_x_ds = tf.convert_to_tensor(test_x, dtype=tf.float64) / 256
    test_y_ds = tf.one_hot(tf.convert_to_tensor(test_y, dtype=tf.int64), depth=num_classes)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mib": _rss_mib(),
        "peak_above_imports_mib": _rss_mib() - base,
        "images": int(train_x_ds.shape[0] + test_x_ds.shape[0]),
        "dtype": train_x_ds.dtype.name,
        "max_value": float(tf.reduce_max(train_x_ds)),
        "labels_shape": list(train_y_ds.shape[1:]),
        "test_labels": int(test_y_ds.shape[0]),
    }


def run_ours(root: str, batch_size: int) -> dict:
    """``load_cifar10`` plus one pass over the batched, scaled, one-hot pipelines."""
    import tensorflow  # noqa: F401 - counted in the baseline, as for the seed

    from cifar_tutorial.data import load_cifar10

    base = _rss_mib()
    start = time.perf_counter()
    data = load_cifar10("folder", root, val_fraction=0.0)
    images, max_value, dtype = 0, 0.0, ""
    for split in ("train", "test"):
        batches = data.dataset(split, batch_size, label_mode="onehot", shuffle=split == "train")
        for x, y in batches:  # noqa: B007 - the last batch's x and y are read below
            images += int(x.shape[0])
        max_value = max(max_value, float(x.numpy().max()))
        dtype = x.dtype.name
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mib": _rss_mib(),
        "peak_above_imports_mib": _rss_mib() - base,
        "images": images,
        "dtype": dtype,
        "max_value": max_value,
        "labels_shape": [int(y.shape[1])],
    }


def child(way: str, root: str, batch_size: int) -> None:
    """Run one way and print its result as JSON (used in a subprocess)."""
    result = (run_seed if way == "seed" else run_ours)(root, batch_size)
    print("RESULT " + json.dumps(result))


def measure(way: str, root: str, batch_size: int) -> dict:
    """Run one way in a fresh Python process and parse its result."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", way, "--data-dir", root, "--batch-size", str(batch_size)],
        capture_output=True, text=True, env=env, check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{way} failed:\n{proc.stderr[-3000:]}")


def main() -> int:
    """Measure both ways (ours first, then the seed's) and print a comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"), help="image folder [$CIFAR10_DIR]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", choices=("seed", "ours"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("give --data-dir or set CIFAR10_DIR")
    if args.child:
        child(args.child, args.data_dir, args.batch_size)
        return 0
    results = {way: measure(way, args.data_dir, args.batch_size) for way in ("ours", "seed")}
    ours, seed = results["ours"], results["seed"]
    summary = {
        "speedup": seed["seconds"] / ours["seconds"],
        "memory_ratio": seed["peak_above_imports_mib"] / ours["peak_above_imports_mib"],
        "batch_size": args.batch_size,
    }
    print(f"{'way':<6} {'seconds':>8} {'peak MiB':>9} {'above imports MiB':>18} {'dtype':>8}")
    for way, r in results.items():
        print(f"{way:<6} {r['seconds']:8.1f} {r['peak_mib']:9.0f} {r['peak_above_imports_mib']:18.0f} {r['dtype']:>8}")
    print(f"ours is {summary['speedup']:.1f}x faster and needs {summary['memory_ratio']:.1f}x less memory")
    if args.out:
        write_json(args.out, {**run_metadata(args.data_dir), **results, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
