"""Command line: ``python -m cifar_tutorial train|evaluate`` (also ``cifar-tutorial``).

``train`` runs the whole pipeline: load the data, build and train a model, evaluate
it once on the test set, and write into ``--out``::

    model.keras      the trained model
    history.csv      per-epoch metrics (also history.json)
    metrics.json     test accuracy and loss, per-class accuracy, confusion matrix
    curves.png       loss and accuracy per epoch
    confusion.png    the confusion matrix
    mistakes.png     the most confident mistakes
    checkpoint/      the last finished epoch, for resuming

Run the same command again after an interruption and training resumes from the
last finished epoch. ``evaluate`` scores a saved model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import keras

from cifar_tutorial import data as cifar_data
from cifar_tutorial import distribute, evaluate, models, plots, recipes, records, runtime, train

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

MODELS: tuple[str, ...] = (*models.MODELS, "fast")
"""The models ``train --model`` offers: those of :func:`cifar_tutorial.models.build_model`
and the fast recipe of :mod:`cifar_tutorial.recipes`."""


class UsageError(ValueError):
    """A command-line argument was refused."""


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


def _add_data_options(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--val-fraction", type=_fraction, default=0.1, metavar="F",
                   help="share of the training set held out for validation [default: %(default)s]")
    g.add_argument("--limit-train", type=_positive_int, metavar="N",
                   help="use only the first N training images (quick trials)")
    g.add_argument("--limit-test", type=_positive_int, metavar="N",
                   help="evaluate on only the first N test images (quick trials)")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (every option is documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m cifar_tutorial",
        description="Train and evaluate CIFAR-10 classifiers from the book "
                    "'Classifying CIFAR-10 with Neural Networks'.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")

    t = sub.add_parser("train", help="train a model, evaluate it, write model, history, "
                                     "metrics and plots",
                       description="Train a model on CIFAR-10, evaluate it once on the test "
                                   "set and write the results into --out. Rerun the same "
                                   "command to resume an interrupted run.")
    m = t.add_argument_group("model and training")
    m.add_argument("--model", choices=MODELS, default="seed",
                   help="seed: the seed article's CNN (chapter 6); vgg_bn: a deeper net with "
                        "batch norm (chapter 8); fast: the fast recipe of chapter 8 (one device, "
                        "no checkpoints; --no-determinism makes it about 40%% faster) "
                        "[default: %(default)s]")
    m.add_argument("--head", choices=models.HEADS,
                   help="output head (chapter 3) [default: softmax for seed, logits otherwise]")
    m.add_argument("--base", type=_positive_float, default=2.0,
                   help="base b of the softmax_base head [default: %(default)s]")
    m.add_argument("--epochs", type=_positive_int, default=None,
                   help="passes over the training set [default: 20, 10 for fast]")
    m.add_argument("--batch-size", type=_positive_int, default=None,
                   help="global batch size [default: 32, 512 for fast]")
    m.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate [default: 1e-4 (Adam) for seed, 1e-3 for vgg_bn]")
    m.add_argument("--scale-lr", action="store_true",
                   help="linear scaling rule (chapter 9): take --lr (or its default) as tuned "
                        f"for a batch of {distribute.REFERENCE_BATCH} and multiply it by "
                        f"--batch-size/{distribute.REFERENCE_BATCH}")
    m.add_argument("--loop", choices=("fit", "custom"), default=None,
                   help="Keras fit or the tf.GradientTape loop of chapter 7 [default: fit; "
                        "custom with --strategy multiworker, where Keras' fit fails]")
    m.add_argument("--augment", action="store_true",
                   help="random flips and shifts of up to 4 pixels (chapter 8)")
    m.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                   help="stop when val_loss has not improved for PATIENCE epochs")
    m.add_argument("--strategy", choices=distribute.STRATEGIES, default="default",
                   help="tf.distribute strategy: one device, all local devices, or the "
                        "workers in $TF_CONFIG (chapter 9) [default: %(default)s]")
    m.add_argument("--seed", type=int, default=0, help="random seed [default: %(default)s]")
    m.add_argument("--no-determinism", action="store_true",
                   help="allow non-deterministic (slightly faster) kernels")
    m.add_argument("--no-resume", action="store_true",
                   help="ignore (and replace) a checkpoint in --out instead of resuming")
    _add_data_options(t)
    o = t.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created if needed)")
    o.add_argument("--quiet", action="store_true", help="print only the final summary")

    e = sub.add_parser("evaluate", help="evaluate a saved model on the test set",
                       description="Evaluate a saved .keras model on CIFAR-10's test set and "
                                   "write metrics.json, confusion.png and mistakes.png.")
    e.add_argument("--model-path", required=True, metavar="FILE", help="a .keras file")
    e.add_argument("--tta", nargs="?", const="flip", default="none", choices=evaluate.TTA_LEVELS,
                   help="test-time augmentation (chapter 8): average the logits over each "
                        "image and its mirror image (--tta or --tta flip), and over copies "
                        "shifted by a pixel too (--tta flip_shift) [default: none]")
    e.add_argument("--out", metavar="DIR",
                   help="output folder [default: the model's folder]")
    _add_data_options(e)
    return parser


def check_output_folder(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and check that files can be written in it.

    Raises
    ------
    UsageError
        If the folder cannot be created or written.
    """
    try:
        return records.check_output_folder(out)
    except ValueError as err:
        raise UsageError(f"{err} with --out") from None


def _load_data(args: argparse.Namespace, seed: int) -> cifar_data.CifarData:
    data = cifar_data.load_cifar10(
        args.source,
        args.data_dir,
        val_fraction=getattr(args, "val_fraction", 0.1),
        seed=seed,
        tfds_data_dir=args.tfds_data_dir,
    )
    if args.limit_train or args.limit_test:
        val = None if args.limit_train is None else max(1, args.limit_train // 10)
        data = data.subset(train=args.limit_train, val=val, test=args.limit_test)
    return data


def _write_plots(out: Path, evaluation, data, history=None) -> list[Path]:
    written = []
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
    for name, fig in figures.items():
        written.append(records.atomic_save(lambda p, f=fig: f.savefig(p, dpi=110), out / name))
    return written


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


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``train``: data, model, training, evaluation, files."""
    out = check_output_folder(args.out)
    if args.model == "fast" and args.head not in (None, "logits"):
        raise UsageError("--model fast ends in logits; it takes no --head")
    if args.model == "fast" and (args.strategy != "default" or args.scale_lr):
        raise UsageError("--model fast trains on one device with its own schedule; "
                         "it takes no --strategy or --scale-lr")
    batch_size = args.batch_size or (512 if args.model == "fast" else 32)
    epochs = args.epochs or (10 if args.model == "fast" else 20)
    verbose = 0 if args.quiet else (2 if sys.stdout.isatty() else 1)

    runtime.set_seed(args.seed, deterministic=not args.no_determinism)
    # Before any other TensorFlow work: MultiWorkerMirroredStrategy configures the
    # runtime's collective ops, which is refused once tensors exist.
    strategy = distribute.make_strategy(args.strategy)
    data = _load_data(args, args.seed)
    print(data.summary(), flush=True)
    train.check_training_args(epochs, batch_size, len(data.y_train))
    started = time.perf_counter()
    if args.model == "fast":
        hyp = recipes.FastHyperparameters(epochs=epochs, batch_size=batch_size)
        model, history = recipes.train_fast_on(
            data, hyp, seed=args.seed, verbose=verbose, deterministic=not args.no_determinism,
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
    tta = "flip" if args.model == "fast" else "none"
    evaluation = evaluate.evaluate(scored, data, "test", tta=tta)
    files = [records.atomic_save(model.save, out / "model.keras")]
    files += list(history.save(out))
    metrics = _metrics(evaluation, history, {
        "model": args.model, "head": model.layers[-1].name, "source": data.source,
        "seed": args.seed, "batch_size": batch_size, "wall_seconds": wall,
        "sizes": data.sizes(), "device": runtime.describe_device(),
        "replicas": strategy.num_replicas_in_sync,
    })
    files.append(records.atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2)))
    files += _write_plots(out, evaluation, data, history)
    print(f"\nTest accuracy {evaluation.accuracy:.4f} (loss {evaluation.loss:.4f}) on "
          f"{len(evaluation.y_true):,} images after {len(history)} epochs, {wall:.0f} s of training.")
    print(f"Weights digest {digest}")
    print("Wrote:")
    for f in files:
        print(f"  {f}")
    return 0


def _train_model(args: argparse.Namespace, data, out: Path, strategy, epochs: int,
                 batch_size: int, verbose: int) -> tuple[keras.Model, records.History]:
    """Build, compile and train one of :func:`cifar_tutorial.models.build_model`'s nets."""
    with strategy.scope():
        kwargs = {"base": args.base} if args.model == "seed" else {}
        model = models.build_model(args.model, head=args.head, **kwargs)
        lr = args.lr or (1e-4 if args.model == "seed" else 1e-3)
        if args.scale_lr:
            lr = distribute.scaled_learning_rate(lr, batch_size, distribute.REFERENCE_BATCH)
        train.compile_model(model, learning_rate=lr)
    if verbose:
        print(f"Model {model.name}: {model.count_params():,} parameters; device "
              f"{runtime.describe_device()}; {strategy.num_replicas_in_sync} replica(s); "
              f"global batch {batch_size}, learning rate {lr:g}")
    history = train.train(
        model, data, epochs=epochs, batch_size=batch_size,
        loop=args.loop or ("custom" if args.strategy == "multiworker" else "fit"),
        out_dir=out, resume=not args.no_resume, seed=args.seed,
        augment=cifar_data.flip_and_translate() if args.augment else None,
        early_stopping=args.early_stopping, strategy=strategy, verbose=verbose,
    )
    return model, history


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run ``evaluate``: load a saved model and score it on the test set."""
    path = Path(args.model_path)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist; train one first with "
                         "`python -m cifar_tutorial train --out DIR`")
    out = check_output_folder(args.out or path.parent)
    data = _load_data(argparse.Namespace(**{**vars(args), "val_fraction": 0.0}), 0)
    print(data.summary(), flush=True)
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - any load failure is the user's file
        raise UsageError(f"{path} cannot be loaded as a Keras model ({err.__class__.__name__}: "
                         f"{str(err)[:200]})") from None
    evaluation = evaluate.evaluate(model, data, "test", tta=args.tta)
    metrics = _metrics(evaluation, None, {"model_path": path.name, "source": data.source,
                                          "tta": args.tta})
    files = [records.atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))]
    files += _write_plots(out, evaluation, data)
    print(f"Test accuracy {evaluation.accuracy:.4f} (loss {evaluation.loss:.4f}) on "
          f"{len(evaluation.y_true):,} images.")
    print("Wrote:")
    for f in files:
        print(f"  {f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cifar_tutorial`` and the ``cifar-tutorial`` script.

    Returns
    -------
    int
        0 on success, 2 for bad input, 3 when training diverged, 130 when interrupted.
    """
    import matplotlib

    matplotlib.use("Agg")
    args = build_parser().parse_args(argv)
    try:
        return cmd_train(args) if args.command == "train" else cmd_evaluate(args)
    except (UsageError, cifar_data.DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except train.TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except train.TrainingInterrupted as err:
        print(f"\nstopped: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except train.TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # outside the epochs: loading, evaluating, writing
        if args.command == "train":
            where = Path(args.out) / "checkpoint"
            print(f"\nstopped (Ctrl-C); finished epochs, if any, are kept in {where}. "
                  "Run the same command again to resume.", file=sys.stderr)
        else:
            print("\nstopped (Ctrl-C); run the same command again", file=sys.stderr)
        return EXIT_INTERRUPTED
