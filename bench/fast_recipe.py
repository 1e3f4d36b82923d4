"""Benchmark the fast CIFAR-10 recipe of chapter 9 ("Going further") end to end.

Example::

    python bench/fast_recipe.py --data-dir path/to/cifar10-png \\
        --seed 0 --out bench/results/fast_recipe_seed0.json

Reads ``<data-dir>/{train,test}/<class>/*.png``, trains with
:func:`cifar_tutorial.recipes.train_fast` on the training set and scores the test
set after every epoch, prints one line per epoch (time, images/s, train loss,
test accuracy) and the totals, and writes them as strict JSON with
``bench/_common.py`` (the run's :class:`cifar_tutorial.records.History` under
``"history"``, its held-out figures named ``test_*``, the hyperparameters under
``"hyperparameters"``, and where the run came from: commit, machine, data).

Every field of :class:`cifar_tutorial.recipes.FastHyperparameters` is a flag of
the same name (``--batch-size``, ``--widths 64,256,256``, ``--lookahead-every``,
``--no-fused-norm``, ...), whose default is the recipe's: this script sets no
number of its own. The training wall time excludes data loading, the per-epoch
test evaluation and the first step (graph tracing), which is reported apart.

With ``--checkpoint-dir DIR`` every finished epoch is saved in ``DIR/checkpoint``
and the same command, run again after the run was stopped, goes on from the last
finished epoch. The per-epoch history then spans all the processes;
``epochs_resumed`` says how many epochs an earlier process did, and the process
figures (``process_cpu_s``, ``wall_time_including_eval_s``) cover only the last.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402 - bench/ is the first entry of sys.path


def field_docs(cls: type) -> dict[str, str]:
    """The description of each attribute in the numpy-style docstring of ``cls``."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    docs: dict[str, list[str]] = {}
    names: list[str] = []
    for line in lines[lines.index("Attributes") + 2:] if "Attributes" in lines else []:
        if line and not line[0].isspace():
            names = [name.strip() for name in line.split(" : ")[0].split(",")]
            docs.update({name: [] for name in names})
        elif line.strip():
            for name in names:
                docs[name].append(line.strip())
    return {name: " ".join(words) for name, words in docs.items()}


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}") from None


def add_hyperparameter_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of ``FastHyperparameters`` (but ``skip``), its default the recipe's.

    ``widths`` becomes ``--widths 64,256,256``, a boolean field ``lookahead``
    both ``--lookahead`` and ``--no-lookahead``, ``tta`` a choice of
    :data:`cifar_tutorial.evaluate.TTA_LEVELS`; the help is the field's
    description in the class docstring.
    """
    from cifar_tutorial.evaluate import TTA_LEVELS
    from cifar_tutorial.recipes import FastHyperparameters

    recipe, docs = FastHyperparameters(), field_docs(FastHyperparameters)
    group = parser.add_argument_group("the recipe's settings (FastHyperparameters)")
    for field in dataclasses.fields(FastHyperparameters):
        if field.name in skip:
            continue
        default = getattr(recipe, field.name)
        flag = "--" + field.name.replace("_", "-")
        text = docs.get(field.name, "").replace("%", "%%")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                               help=text)
        elif isinstance(default, tuple):
            group.add_argument(flag, type=_int_tuple, default=default, metavar="N,N,N",
                               help=f"{text} [default: {','.join(map(str, default))}]")
        elif field.name == "tta":
            group.add_argument(flag, choices=TTA_LEVELS, default=default,
                               help=f"{text} [default: %(default)s]")
        else:
            group.add_argument(flag, type=type(default), default=default,
                               help=f"{text} [default: %(default)s]")


def hyperparameters_from(args: argparse.Namespace, **fixed: Any) -> Any:
    """The ``FastHyperparameters`` the flags of :func:`add_hyperparameter_flags` ask for.

    ``fixed`` gives the fields that have no flag (those skipped).
    """
    from cifar_tutorial.recipes import FastHyperparameters

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FastHyperparameters)
              if f.name not in fixed}
    return FastHyperparameters(**values, **fixed)


def script_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that are not the recipe's (those are recorded as ``hyperparameters``)."""
    from cifar_tutorial.recipes import FastHyperparameters

    recipe = {f.name for f in dataclasses.fields(FastHyperparameters)}
    return {k: v for k, v in vars(args).items() if k not in recipe}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the recipe and write the JSON results (chapter 9)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"])
    parser.add_argument("--deterministic", action="store_true", help="enable op determinism (slower)")
    parser.add_argument("--no-eval-every-epoch", action="store_true")
    parser.add_argument("--out", default=None, help="path of the JSON results")
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="save every epoch in DIR/checkpoint and resume from it")
    add_hyperparameter_flags(parser)
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("--data-dir or CIFAR10_DIR is required")

    from cifar_tutorial import checkpoints, recipes, runtime
    from cifar_tutorial.data import read_image_folder

    hyp = hyperparameters_from(args)
    started = _common.git_state()  # the code this run trains with, whatever is committed later
    t0 = time.perf_counter()
    (x_train, y_train), (x_test, y_test), _ = read_image_folder(args.data_dir)
    load_time = time.perf_counter() - t0
    print(f"loaded {len(x_train)} train / {len(x_test)} test images in {load_time:.1f}s", flush=True)

    precision = runtime.choose_precision(args.precision)
    cpu = _common.describe_cpu()
    print(f"{cpu['cpu_model']}, {cpu['cores_available']} cores, bfloat16: "
          f"{cpu['matrix_extensions']}, precision {precision}", flush=True)
    resumed = checkpoints.epochs_saved(args.checkpoint_dir) if args.checkpoint_dir else 0
    load_before = _common.load_average()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    _, history = recipes.train_fast(
        x_train, y_train, x_test, y_test, hyp,
        heldout="test",
        seed=args.seed,
        precision=precision,
        deterministic=args.deterministic,
        eval_every_epoch=not args.no_eval_every_epoch,
        out_dir=args.checkpoint_dir,
        verbose=1,
        log=lambda line: print(line, flush=True),
    )
    wall_total = time.perf_counter() - t_start
    process_cpu_s = time.process_time() - cpu_start
    load_after = _common.load_average()

    summary = history.summary
    train_s = summary["train_seconds"]
    print(f"precision {summary['precision']}, batch {hyp.batch_size}, params {summary['params']:,}")
    print(f"first step (tracing): {summary['first_step_seconds']:.1f}s")
    print(f"training wall time: {train_s:.1f}s ({train_s / 60:.2f} min), "
          f"{summary['images_per_s']:.0f} img/s")
    print(f"whole call incl. evaluation and tracing: {wall_total:.1f}s")
    if summary.get("epoch_to_90") is not None:
        print(
            f"test accuracy >= 90% first after epoch {summary['epoch_to_90']} "
            f"({summary['seconds_to_90']:.1f}s of training)"
        )
    for level, accuracy in summary["test_accuracy"].items():
        print(f"final test accuracy, TTA {level}: {accuracy:.4f}")

    result: dict[str, Any] = {
        **_common.run_metadata(args.data_dir, git=started),
        "args": {**script_args(args), "data_dir": _common.portable_path(args.data_dir),
                 "out": args.out and _common.portable_path(args.out),
                 "checkpoint_dir": (args.checkpoint_dir
                                    and _common.portable_path(args.checkpoint_dir))},
        "hyperparameters": dataclasses.asdict(hyp),
        "history": history.to_dict(),
        "epochs_resumed": resumed,
        "load_time_s": load_time,
        "wall_time_including_eval_s": wall_total,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        # A run started with `nice` may have yielded the cores to other work: its
        # accuracy counts, its wall times must not be quoted; process_cpu_s says
        # how much of the machine it had.
        "nice": os.nice(0),
        "process_cpu_s": process_cpu_s,
    }
    if args.out:
        print(f"wrote {_common.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
