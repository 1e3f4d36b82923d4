"""Command line: ``python -m cifar_tutorial train|evaluate|predict`` (also ``cifar-tutorial``).

``train`` runs the whole pipeline: load the data, build and train a model, evaluate
it once on the test set, and write into ``--out``::

    model.keras      the trained model
    history.csv      per-epoch metrics (also history.json)
    metrics.json     test accuracy and loss, per-class accuracy, confusion matrix
    curves.png       loss and accuracy per epoch
    confusion.png    the confusion matrix
    mistakes.png     the most confident mistakes
    checkpoint/      the last finished epoch, for resuming

Run the same command again after an interruption (Ctrl-C, a killed process) and
training resumes from the last finished epoch, for every model. ``evaluate`` scores
a saved model and writes ``evaluation.json`` (never a training run's
``metrics.json``); ``predict`` classifies image files (chapter 7).

TensorFlow is imported only once a command runs, so that ``--help`` answers at
once; its C++ start-up notices (oneDNN, CUDA probing) are filtered out as
``TF_CPP_MIN_LOG_LEVEL`` says (the package sets 2 unless the user set it: notices
and warnings hidden, errors shown) or shown with ``--verbose-tf``; while a command
runs, its stderr goes through the same filter (:func:`filter_stderr`).

Exit codes: 0 done; 1 a bug (its traceback is shown: please report it); 2 an error
the user can fix (:class:`~cifar_tutorial.errors.CifarTutorialError`: bad input, a
damaged checkpoint, a full or read-only disk, a folder another run holds), in one
``error:`` line; 3 training diverged; 130 interrupted (Ctrl-C), resumable.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifar_tutorial import errors, records
from cifar_tutorial.checkpoints import CHECKPOINT_DIR, epochs_saved
from cifar_tutorial.errors import UsageError

EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

# The parser's choices, written here so that parsing and --help need no TensorFlow;
# tests/test_cli.py checks that they equal the package's own (models.MODELS plus
# "fast", models.HEADS, distribute.STRATEGIES and REFERENCE_BATCH, evaluate.TTA_LEVELS).
MODELS: tuple[str, ...] = ("seed", "vgg_bn", "fast")
"""The models ``train --model`` offers, those of :func:`cifar_tutorial.models.build_model`
and the fast recipe of :mod:`cifar_tutorial.recipes`."""
HEADS: tuple[str, ...] = ("softmax", "softmax_base", "l2", "l1_relu", "logits")
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")
TTA_LEVELS: tuple[str, ...] = ("none", "flip", "flip_shift")
REFERENCE_BATCH = 32

FAST_REFUSES: dict[str, tuple[str, str]] = {
    "head": ("--head", "it ends in logits"),
    "base": ("--base", "it has no softmax_base head"),
    "lr": ("--lr", "its learning rate follows the recipe's own schedule"),
    "scale_lr": ("--scale-lr", "its learning rate follows the recipe's own schedule"),
    "loop": ("--loop", "it has a training loop of its own"),
    "augment": ("--augment", "it always flips and shifts its training images"),
    "early_stopping": ("--early-stopping", "it records no validation loss to watch"),
    "strategy": ("--strategy", "it trains on one device"),
}
"""The ``train`` options that ``--model fast`` refuses, argument name -> (option, why).
It uses the others, ``--no-resume`` included."""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return value


def _add_data_options(p: argparse.ArgumentParser, training: bool) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--source", choices=("auto", "folder", "tfds"), default="auto",
                   help="where CIFAR-10 comes from: an image folder, TensorFlow Datasets, "
                        "or 'auto' (folder if given or $CIFAR10_DIR is set, else TFDS) "
                        "[default: %(default)s]")
    g.add_argument("--data-dir", metavar="DIR",
                   help="image folder with train/<class>/*.jpg and test/<class>/*.jpg "
                        "[default: $CIFAR10_DIR]")
    g.add_argument("--tfds-data-dir", metavar="DIR",
                   help="TensorFlow Datasets folder [default: TFDS's own]")
    if training:
        g.add_argument("--val-fraction", type=_fraction, default=0.1, metavar="F",
                       help="share of the training set held out for validation "
                            "[default: %(default)s]")
        g.add_argument("--limit-train", type=_positive_int, metavar="N",
                       help="use only the first N training images (quick trials)")
    g.add_argument("--limit-test", type=_positive_int, metavar="N",
                   help="evaluate on only the first N test images (quick trials)")


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose-tf", action="store_true",
                        help="show TensorFlow's C++ start-up and log lines (hidden otherwise, "
                             "as TF_CPP_MIN_LOG_LEVEL says)")
    return common


def _add_train_parser(sub, common: argparse.ArgumentParser) -> None:
    t = sub.add_parser("train", parents=[common],
                       help="train a model, evaluate it, write model, history, metrics and plots",
                       description="Train a model on CIFAR-10, evaluate it once on the test "
                                   "set and write the results into --out. Rerun the same "
                                   "command to resume an interrupted run.")
    m = t.add_argument_group("model and training")
    m.add_argument("--model", choices=MODELS, default="seed",
                   help="seed: the seed article's CNN (chapter 7); vgg_bn: a deeper net with "
                        "batch norm (chapter 9); fast: the fast recipe of chapter 9, with its "
                        "own schedule and augmentation (it refuses --head, --base, --lr, "
                        "--scale-lr, --loop, --augment, --early-stopping and --strategy; "
                        "--no-determinism makes it about 40%% faster) [default: %(default)s]")
    m.add_argument("--head", choices=HEADS,
                   help="output head (chapter 3) [default: softmax for seed, logits otherwise]")
    m.add_argument("--base", type=_positive_float, default=None,
                   help="base b of the softmax_base head [default: 2]")
    m.add_argument("--epochs", type=_positive_int, default=None,
                   help="passes over the training set [default: 20, the recipe's for fast]")
    m.add_argument("--batch-size", type=_positive_int, default=None,
                   help="global batch size [default: 32, the recipe's for fast]")
    m.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate [default: 1e-4 (Adam) for seed, 1e-3 for vgg_bn]")
    m.add_argument("--scale-lr", action="store_true",
                   help="linear scaling rule (chapter 10): take --lr (or its default) as tuned "
                        f"for a batch of {REFERENCE_BATCH} and multiply it by "
                        f"--batch-size/{REFERENCE_BATCH}")
    m.add_argument("--loop", choices=("fit", "custom"), default=None,
                   help="Keras fit or the tf.GradientTape loop of chapter 8 [default: fit; "
                        "custom with --strategy multiworker, where Keras' fit fails]")
    m.add_argument("--augment", action="store_true",
                   help="random flips and shifts of up to 4 pixels (chapter 9)")
    m.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                   help="stop when val_loss has not improved for PATIENCE epochs")
    m.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy: one device, all local devices, or the "
                        "workers in $TF_CONFIG (chapter 10) [default: %(default)s]")
    m.add_argument("--seed", type=int, default=0, help="random seed [default: %(default)s]")
    m.add_argument("--no-determinism", action="store_true",
                   help="allow non-deterministic (slightly faster) kernels")
    m.add_argument("--no-resume", action="store_true",
                   help="ignore (and replace) a checkpoint in --out instead of resuming")
    _add_data_options(t, training=True)
    o = t.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created if needed)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress bar: one line an epoch and the final summary (as when "
                        "the output is not a terminal)")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (every option is documented in ``--help``).

    Building and parsing import no TensorFlow.
    """
    parser = argparse.ArgumentParser(
        prog="python -m cifar_tutorial",
        description="Train and evaluate CIFAR-10 classifiers from the book "
                    "'Classifying CIFAR-10 with Neural Networks', and classify your own "
                    "images with them.",
    )
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{train,evaluate,predict}")
    common = _common_options()
    _add_train_parser(sub, common)

    e = sub.add_parser("evaluate", parents=[common],
                       help="evaluate a saved model on the test set",
                       description="Evaluate a saved .keras model on CIFAR-10's test set and "
                                   "write evaluation.json, evaluation-confusion.png and "
                                   "evaluation-mistakes.png (a training run's metrics.json "
                                   "and plots are left as they are).")
    e.add_argument("--model-path", required=True, metavar="FILE", help="a .keras file")
    e.add_argument("--tta", nargs="?", const="flip", default="none", choices=TTA_LEVELS,
                   help="test-time augmentation (chapter 9): average the logits over each "
                        "image and its mirror image (--tta or --tta flip), and over copies "
                        "shifted by a pixel too (--tta flip_shift) [default: none]")
    e.add_argument("--out", metavar="DIR",
                   help="output folder [default: the model's folder]")
    _add_data_options(e, training=False)

    p = sub.add_parser("predict", parents=[common],
                       help="classify image files with a saved model",
                       description="Classify image files of any size and mode (RGB, RGBA, "
                                   "grayscale, palette) with a saved model: each is cropped "
                                   "to its centre square and resized to 32x32 as in "
                                   "chapter 7. Prints the most probable classes of each "
                                   "image; a file that cannot be read is reported on stderr "
                                   "(exit code 2) and the others are still classified.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, GIF, BMP, WebP, TIFF)")
    p.add_argument("--model-path", required=True, metavar="FILE",
                   help="a .keras file, e.g. runs/seed/model.keras")
    p.add_argument("--top", type=_positive_int, default=3, metavar="K",
                   help="how many classes to show per image [default: %(default)s]")
    p.add_argument("--json", action="store_true",
                   help='print one JSON document: a list with one {"image": PATH, "top": '
                        '[{"class": NAME, "probability": P}, ...]} per readable image, '
                        "highest first")
    return parser


# --------------------------------------------------------------------------- TensorFlow start-up

_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"
_LOG_LINE = re.compile(
    r"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"  # I0000 00:00:17.5 42 port.cc:153]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) )"      # (older) 2024-01-01 12:00:00.1: I
)


_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT_FAILED = "failed call to cuInit"
_IGNORED_BY_TF = "Unknown attributes will be ignored."
"""The end of an ERROR line TensorFlow 2.21 writes when a tf.data function built
by its own Python side names an attribute its C++ op lacks: harmless, it says."""


def without_tf_notices(text: str, level: int) -> str:
    """Drop TensorFlow's C++ log lines below ``level`` (``TF_CPP_MIN_LOG_LEVEL``'s meaning).

    Level 1 drops INFO lines (and absl's banner), 2 also WARNING, 3 also ERROR; fatal
    lines and everything else (Python warnings, tracebacks) are kept. From level 1,
    two ERROR lines that report nothing wrong are dropped too: a failed ``cuInit``
    where ``text`` says that the machine has no CUDA driver (no GPU is expected
    there), and an unknown attribute that TensorFlow says it ignores.
    """
    kept = []
    no_driver = _NO_DRIVER in text
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match is not None:
            harmless = level >= 1 and ((no_driver and _CUINIT_FAILED in line)
                                       or _IGNORED_BY_TF in line)
            if "IWEF".index(match.group(1) or match.group(2)) >= min(level, 3) and not harmless:
                kept.append(line)
        elif not (level >= 1 and (line.startswith(_ABSL_BANNER)
                                  or line.startswith("To enable the following instructions:"))):
            kept.append(line)
    return "".join(kept)


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow without the C++ notices it prints while it loads.

    In TensorFlow 2.21 those lines (oneDNN, CUDA probing) come before its logging
    reads ``TF_CPP_MIN_LOG_LEVEL``; they are written to file descriptor 2, which is
    caught during the import and the listing of the GPUs (where CUDA starts, or
    says it cannot) and passed on through :func:`without_tf_notices`.
    ``verbose`` shows everything (``TF_CPP_MIN_LOG_LEVEL=0``).
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if "tensorflow" in sys.modules:
        return
    level = _log_level()
    if level <= 0:
        import tensorflow  # noqa: F401
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            sys.stderr.write(without_tf_notices(caught.read().decode(errors="replace"), level))
            sys.stderr.flush()


def filter_stderr() -> Callable[[], None]:
    """Pass file descriptor 2 through :func:`without_tf_notices` until the returned
    function is called (the program's C++ lines after start-up, such as those of
    ``tf.data``); nothing is filtered where ``TF_CPP_MIN_LOG_LEVEL`` is 0.

    A thread forwards each line as it comes; the returned function puts the real
    stderr back and waits for the last line.
    """
    level = _log_level()
    if level <= 0:
        return lambda: None
    sys.stderr.flush()
    reader, writer = os.pipe()
    original = os.dup(2)
    os.dup2(writer, 2)
    os.close(writer)

    def forward() -> None:
        pending = b""
        with os.fdopen(reader, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                *lines, pending = (pending + chunk).split(b"\n")
                if lines:
                    text = "".join(f"{line.decode(errors='replace')}\n" for line in lines)
                    os.write(original, without_tf_notices(text, level).encode())
        if pending:
            os.write(original, without_tf_notices(pending.decode(errors="replace"),
                                                  level).encode())

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()

    def stop() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer is gone: the thread ends
        thread.join(timeout=10)
        os.close(original)

    return stop


def _log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


# --------------------------------------------------------------------------- shared steps


def _out_folder(out: str | os.PathLike) -> Path:
    """Check the ``--out`` folder as :func:`cifar_tutorial.records.check_output_folder`
    does, with an error that names the flag.

    Raises
    ------
    OutputError
        If the folder cannot be created or written.
    """
    try:
        return records.check_output_folder(out)
    except errors.OutputError as err:
        raise errors.OutputError(f"{err} with --out") from None


def _load_data(args: argparse.Namespace, seed: int):
    from cifar_tutorial import data as cifar_data

    limit_train = getattr(args, "limit_train", None)
    data = cifar_data.load_cifar10(
        args.source,
        args.data_dir,
        val_fraction=getattr(args, "val_fraction", 0.0),
        seed=seed,
        tfds_data_dir=args.tfds_data_dir,
    )
    if limit_train or args.limit_test:
        val = None if limit_train is None else max(1, limit_train // 10)
        data = data.subset(train=limit_train, val=val, test=args.limit_test)
    return data


def _write_plots(out: Path, evaluation, data, history=None, prefix: str = "") -> list[Path]:
    from cifar_tutorial import plots

    figures = {}
    if history is not None and len(history):
        figures["curves.png"] = plots.training_curves(history)
    figures["confusion.png"] = plots.confusion_matrix(evaluation.confusion, data.class_names)
    worst = evaluation.worst_mistakes(16)
    if len(worst):
        figures["mistakes.png"] = plots.mistakes(
            data.x_test[worst], evaluation.y_true[worst], evaluation.y_pred[worst],
            evaluation.probabilities[worst, evaluation.y_pred[worst]], data.class_names,
        )
    return [records.atomic_save(lambda p, f=fig: f.savefig(p, dpi=plots.DPI),
                                out / f"{prefix}{name}") for name, fig in figures.items()]


def _metrics(evaluation, history, extra: dict[str, Any]) -> dict[str, Any]:
    summary = evaluation.to_dict()
    metrics: dict[str, Any] = {
        "test_accuracy": summary.pop("accuracy"),
        "test_loss": summary.pop("loss"),
        "test_examples": summary.pop("num_examples"),
        **summary,
    }
    if history is not None and len(history):
        last = history.records[-1]
        metrics.update(
            epochs_trained=len(history),
            train_accuracy=last["accuracy"],
            train_loss=last["loss"],
            val_accuracy=last["val_accuracy"],
            val_loss=last["val_loss"],
            train_seconds=sum(r["seconds"] for r in history.records),
        )
    metrics.update(extra)
    return metrics


def _print_files(files: list[Path]) -> None:
    print("Wrote:")
    for f in files:
        print(f"  {f}")


# --------------------------------------------------------------------------- train


def _check_fast_options(args: argparse.Namespace) -> None:
    given = [(option, why) for name, (option, why) in FAST_REFUSES.items()
             if getattr(args, name) not in (None, False, "default")
             and not (name == "head" and args.head == "logits")]
    if given:
        reasons = "; ".join(f"{option}: {why}" for option, why in given)
        options = " or ".join(option for option, _ in given)
        raise UsageError(f"--model fast takes no {options} ({reasons}); leave "
                         f"{'it' if len(given) == 1 else 'them'} out")


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``train``: data, model, training, evaluation, files.

    The output folder is held by a :class:`~cifar_tutorial.records.RunLock` from
    before the data is read until the last file is written (by the chief only,
    when several workers train together).
    """
    from cifar_tutorial import distribute, runtime

    if args.model == "fast":
        _check_fast_options(args)
    out = _out_folder(args.out)
    runtime.set_seed(args.seed, deterministic=not args.no_determinism)
    # Before any other TensorFlow work: MultiWorkerMirroredStrategy configures the
    # runtime's collective ops, which is refused once tensors exist.
    try:
        strategy = distribute.make_strategy(args.strategy)
    except ValueError as err:  # TF_CONFIG missing or not JSON
        raise UsageError(f"--strategy {args.strategy}: {err}") from None
    if not distribute.is_chief(strategy):
        return _train_and_write(args, out, strategy)
    with records.RunLock(out):
        return _train_and_write(args, out, strategy)


def _train_and_write(args: argparse.Namespace, out: Path, strategy) -> int:
    """Train, then (on the chief) evaluate and write every file of the run."""
    from cifar_tutorial import distribute, evaluate, recipes, runtime, train

    recipe = recipes.FastHyperparameters()  # --model fast's defaults
    batch_size = args.batch_size or (recipe.batch_size if args.model == "fast" else 32)
    epochs = args.epochs or (math.ceil(recipe.epochs) if args.model == "fast" else 20)
    verbose = 1 if args.quiet or not sys.stdout.isatty() else 2
    data = _load_data(args, args.seed)
    print(data.summary(), flush=True)
    train.check_training_args(epochs, batch_size, len(data.y_train))
    resumed = 0 if args.no_resume else epochs_saved(out)
    started = time.perf_counter()
    if args.model == "fast":
        hyp = recipes.FastHyperparameters(epochs=epochs, batch_size=batch_size)
        model, history = recipes.train_fast_on(
            data, hyp, seed=args.seed, verbose=verbose, deterministic=not args.no_determinism,
            out_dir=out, resume=not args.no_resume,
        )
    else:
        model, history = _train_model(args, data, out, strategy, epochs, batch_size, verbose)
    wall = time.perf_counter() - started
    digest = distribute.weights_digest(model)
    if not distribute.is_chief(strategy):
        print(f"Worker done: weights digest {digest} (the chief writes the files)")
        return 0
    # A model built under MultiWorkerMirroredStrategy cannot predict on its own.
    scored = distribute.local_copy(model) if args.strategy == "multiworker" else model
    tta = hyp.tta if args.model == "fast" else "none"
    evaluation = evaluate.evaluate(scored, data, "test", tta=tta)
    files = [records.atomic_save(model.save, out / "model.keras")]
    files += list(history.save(out))
    metrics = _metrics(evaluation, history, {
        "model": args.model, "head": model.layers[-1].name, "source": data.source,
        "seed": args.seed, "batch_size": batch_size, "wall_seconds": wall,
        "resumed_after_epoch": min(resumed, len(history)),
        "sizes": data.sizes(), "device": runtime.describe_device(),
        "replicas": strategy.num_replicas_in_sync,
    })
    files.append(records.atomic_write_json(out / "metrics.json", metrics))
    files += _write_plots(out, evaluation, data, history)
    print(f"\nTest accuracy {evaluation.accuracy:.4f} (loss {evaluation.loss:.4f}) on "
          f"{_plural(len(evaluation.y_true), 'image')} after {_train_time(history, resumed)}.")
    print(f"Weights digest {digest}")
    _print_files(files)
    return 0


def _train_time(history, resumed: int) -> str:
    """How long the run trained, e.g. "3 epochs, 12 s of training", in all its sessions."""
    total = sum(r["seconds"] for r in history.records)
    text = f"{_plural(len(history), 'epoch')}, {total:.0f} s of training"
    if 0 < resumed <= len(history):
        session = sum(r["seconds"] for r in history.records[resumed:])
        text += (f" in all sessions ({session:.0f} s in this one, which resumed after "
                 f"epoch {resumed})")
    return text


def _train_model(args: argparse.Namespace, data, out: Path, strategy, epochs: int,
                 batch_size: int, verbose: int):
    """Build, compile and train one of :func:`cifar_tutorial.models.build_model`'s nets."""
    from cifar_tutorial import data as cifar_data
    from cifar_tutorial import distribute, models, runtime, train

    with strategy.scope():
        kwargs = {} if args.base is None else {"base": args.base}
        model = models.build_model(args.model, head=args.head, **kwargs)
        lr = args.lr or (1e-4 if args.model == "seed" else 1e-3)
        if args.scale_lr:
            lr = distribute.scaled_learning_rate(lr, batch_size, distribute.REFERENCE_BATCH)
        train.compile_model(model, learning_rate=lr)
    if verbose:
        print(f"Model {model.name}: {model.count_params():,} parameters; device "
              f"{runtime.describe_device()}; {_plural(strategy.num_replicas_in_sync, 'replica')}; "
              f"global batch {batch_size}, learning rate {lr:g}")
    history = train.train(
        model, data, epochs=epochs, batch_size=batch_size,
        loop=args.loop or ("custom" if args.strategy == "multiworker" else "fit"),
        out_dir=out, resume=not args.no_resume, seed=args.seed,
        augment=cifar_data.flip_and_translate() if args.augment else None,
        early_stopping=args.early_stopping, strategy=strategy, verbose=verbose,
    )
    return model, history


# --------------------------------------------------------------------------- evaluate, predict


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run ``evaluate``: load a saved model, score it on the test set, write evaluation.json."""
    from cifar_tutorial import evaluate, predict

    path = Path(args.model_path)
    out = _out_folder(args.out or path.parent)
    model = predict.load_model(path)
    data = _load_data(args, 0)
    print(data.summary(), flush=True)
    evaluation = evaluate.evaluate(model, data, "test", tta=args.tta)
    metrics = _metrics(evaluation, None, {"model_path": str(path), "source": data.source,
                                          "tta": args.tta})
    files = [records.atomic_write_json(out / "evaluation.json", metrics)]
    files += _write_plots(out, evaluation, data, prefix="evaluation-")
    print(f"Test accuracy {evaluation.accuracy:.4f} (loss {evaluation.loss:.4f}) on "
          f"{_plural(len(evaluation.y_true), 'image')}, test-time augmentation {args.tta}.")
    _print_files(files)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Run ``predict``: the top classes of each image file, readable or as JSON."""
    from cifar_tutorial import predict

    model = predict.load_model(args.model_path)
    results = predict.images_probabilities(model, args.images)
    found: list[dict[str, Any]] = []
    for image, result in zip(args.images, results):
        if isinstance(result, predict.ImageError):
            print(f"error: {result}", file=sys.stderr)
            continue
        top = predict.top_k(result, args.top)
        found.append({"image": image, "top": [{"class": c, "probability": p} for c, p in top]})
        if not args.json:
            print(f"{image}:")
            for name, probability in top:
                print(f"  {name:<10} {probability:7.1%}")
    if args.json:
        print(records.to_json(found))
    return 0 if len(found) == len(args.images) else EXIT_BAD_INPUT


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cifar_tutorial`` and the ``cifar-tutorial`` script.

    An error the user can fix (:class:`~cifar_tutorial.errors.CifarTutorialError`)
    is one ``error:`` line on stderr; anything else is a bug, shown with its
    traceback. Ctrl-C says how to resume. As a program (no ``argv``), its stderr
    goes through :func:`filter_stderr`, and after a failed HDF5 write
    (:func:`cifar_tutorial.records.hdf5_write_failed`) it ends at once, skipping
    h5py's clean-up, which would crash; called with ``argv`` (tests, a notebook),
    ``main`` returns instead.

    Returns
    -------
    int
        0 on success, 1 for a bug, 2 for an error the user can fix, 3 when
        training diverged, 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    import_tensorflow(verbose=args.verbose_tf)
    stop_filter = filter_stderr() if argv is None else (lambda: None)
    try:
        code = _run(args)
    finally:
        stop_filter()
    if argv is None and records.hdf5_write_failed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # now, before h5py's clean-up crashes the process
    return code


def _run(args: argparse.Namespace) -> int:
    """Run the command; an error becomes its message and exit code (see :func:`main`)."""
    import matplotlib

    matplotlib.use("Agg")

    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt as err:  # errors.TrainingInterrupted included
        print(f"\nstopped (Ctrl-C): {_resume_hint(args, err)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except errors.CifarTutorialError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Exception:
        traceback.print_exc()
        print(f"internal error: this is a bug in cifar_tutorial {_version()}; please report it "
              "with the traceback above and the command you ran", file=sys.stderr)
        return EXIT_BUG


def _resume_hint(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """What Ctrl-C left: training's own account, or where finished epochs are kept."""
    if isinstance(err, errors.TrainingInterrupted):
        return str(err)
    if args.command == "train":
        where = Path(args.out) / CHECKPOINT_DIR
        return (f"finished epochs, if any, are kept in {where}. Run the same command again "
                "to resume.")
    return "run the same command again"


def _version() -> str:
    from cifar_tutorial import __version__

    return __version__
