"""Benchmark the fast CIFAR-10 recipe of chapter 8 ("Going further") end to end.

Example::

    PYTHONPATH=. python bench/fast_recipe.py --data-dir /path/to/cifar10-jpeg \\
        --seed 0 --epochs 10 --out bench/results/fast_recipe_seed0.json

Reads ``<data-dir>/{train,test}/<class>/*.jpg``, trains with
:func:`cifar_tutorial.recipes.train_fast`, prints one line per epoch (time,
images/s, train loss, test accuracy) and the totals, and writes them as JSON
(the run's :class:`cifar_tutorial.records.History` under ``"history"``, and the
hyperparameters under ``"hyperparameters"``).
The training wall time excludes data loading, the per-epoch test evaluation
and the first step (graph tracing), which is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cpu_load() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the recipe and write the JSON results (chapter 8)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"])
    parser.add_argument("--widths", default="64,256,256")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate per 1024 images (default: the recipe's)")
    parser.add_argument("--bn-momentum", type=float, default=None,
                        help="Keras BatchNorm momentum (default: the recipe's 0.6)")
    parser.add_argument("--no-lookahead", action="store_true", help="train without Lookahead")
    parser.add_argument("--lookahead-every", type=int, default=None,
                        help="steps between Lookahead updates (default: the recipe's 5)")
    parser.add_argument("--no-fused-norm", action="store_true",
                        help="train with Keras' own BatchNormalization (the recipe's before)")
    parser.add_argument("--no-compiled-gelu", action="store_true",
                        help="compute the GELUs with Keras' own ops (the recipe's before)")
    parser.add_argument("--deterministic", action="store_true", help="enable op determinism (slower)")
    parser.add_argument("--no-eval-every-epoch", action="store_true")
    parser.add_argument("--tta", default="flip_shift", choices=["none", "flip", "flip_shift"],
                        help="report the final test accuracy at every TTA level up to this one")
    parser.add_argument("--out", default=None, help="path of the JSON results")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir or CIFAR10_DIR is required")

    import dataclasses

    from cifar_tutorial import recipes, runtime
    from cifar_tutorial.records import portable_argv, portable_path
    from cifar_tutorial.data import read_image_folder

    t0 = time.perf_counter()
    (x_train, y_train), (x_test, y_test), _ = read_image_folder(args.data_dir)
    load_time = time.perf_counter() - t0
    print(f"loaded {len(x_train)} train / {len(x_test)} test images in {load_time:.1f}s", flush=True)

    precision = runtime.choose_precision(args.precision)
    cpu = runtime.describe_cpu()
    print(f"{cpu['cpu_model']}, {cpu['cores_available']} cores, bfloat16: "
          f"{cpu['matrix_extensions']}, precision {precision}", flush=True)
    hyp = recipes.FastHyperparameters(
        epochs=args.epochs, batch_size=args.batch_size,
        widths=tuple(int(w) for w in args.widths.split(",")),
        fused_norm=not args.no_fused_norm, compiled_gelu=not args.no_compiled_gelu,
        lookahead=not args.no_lookahead,
    )
    if args.bn_momentum is not None:
        hyp = dataclasses.replace(hyp, bn_momentum=args.bn_momentum)
    if args.lr is not None:
        hyp = dataclasses.replace(hyp, lr=args.lr)
    if args.lookahead_every is not None:
        hyp = dataclasses.replace(hyp, lookahead_every=args.lookahead_every)
    load_before = _cpu_load()
    t_start = time.perf_counter()
    model, history = recipes.train_fast(
        x_train, y_train, x_test, y_test, hyp,
        seed=args.seed,
        precision=precision,
        deterministic=args.deterministic,
        eval_every_epoch=not args.no_eval_every_epoch,
        tta=args.tta,
        verbose=1,
        log=lambda line: print(line, flush=True),
    )
    wall_total = time.perf_counter() - t_start
    load_after = _cpu_load()

    summary = history.summary
    train_s = summary["train_seconds"]
    print(f"precision {summary['precision']}, batch {args.batch_size}, params {summary['params']:,}")
    print(f"first step (tracing): {summary['first_step_seconds']:.1f}s")
    print(f"training wall time: {train_s:.1f}s ({train_s / 60:.2f} min), "
          f"{summary['images_per_s']:.0f} img/s")
    print(f"whole call incl. evaluation and tracing: {wall_total:.1f}s")
    if summary.get("epoch_to_90") is not None:
        print(
            f"test accuracy >= 90% first after epoch {summary['epoch_to_90']} "
            f"({summary['seconds_to_90']:.1f}s of training)"
        )
    for level, accuracy in summary["accuracy"].items():
        print(f"final test accuracy, TTA {level}: {accuracy:.4f}")

    result: dict[str, Any] = {
        "args": {**vars(args), "data_dir": portable_path(args.data_dir)},
        "hyperparameters": dataclasses.asdict(hyp),
        "history": history.to_dict(),
        "load_time_s": load_time,
        "wall_time_including_eval_s": wall_total,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpu_count": os.cpu_count(),
        "machine": runtime.describe_cpu(),
        "python": platform.python_version(),
        "argv": portable_argv(sys.argv),
    }
    try:
        import keras
        import tensorflow as tf

        result["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__}
    except ImportError:  # pragma: no cover
        pass
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
