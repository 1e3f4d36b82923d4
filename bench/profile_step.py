"""Profile the fast recipe's training step op by op, against its convolutions alone.

Example::

    python bench/profile_step.py --out bench/results/profile_step.json

The recipe's settings are flags of the same names as the fields of
:class:`cifar_tutorial.recipes.FastHyperparameters` (``--batch-size``,
``--no-fused-norm``, ...), with the recipe's defaults, as in ``bench/fast_recipe.py``.

Three measurements, in one process, on random uint8 images (the step's speed does
not depend on the pixel values, and no data pipeline is involved):

1. **the step**: :func:`cifar_tutorial.recipes.train_fast` for ``--steps`` steps
   (augmentation, Lookahead and the per-variable gradient scaling included), its
   images per second taken, as the recipe reports them, without the first step;
2. **its ops**: a few more steps under TensorFlow's profiler
   (``tf.profiler.experimental``); every op's time on TensorFlow's executor threads
   is summed and sorted into what it does (convolution, batch norm, GELU, casts,
   pooling, the optimizer's update, ...), in milliseconds per step;
3. **the convolutions alone**: the net's six 3x3 convolutions and their pools,
   forward and backward, in the step's precision, in images and GFLOP per second:
   the speed the whole step would have if nothing but its convolutions took time.

The op times are wall-clock times of each op on the thread that ran it; on two
cores two ops can overlap, so their sum may exceed the step's wall time. Shares
are of that sum.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402 - bench/ is the first entry of sys.path
from fast_recipe import add_hyperparameter_flags, hyperparameters_from  # noqa: E402

#: The groups the op table sorts ops into, in the order they are shown.
GROUPS = (
    "3x3 convolutions",
    "whitening",
    "batch norm",
    "GELU",
    "max pooling",
    "casts",
    "gradient sums",
    "optimizer, decay, Lookahead",
    "loss and the rest",
)


def op_group(name: str, op_type: str) -> str:
    """The group of :data:`GROUPS` an op belongs to, from its name and type.

    Parameters
    ----------
    name : str
        The op's name in the graph, e.g. ``"fast_net_1/block0_bn0_1/moments/Mean"``.
    op_type : str
        Its type as the executor ran it, e.g. ``"_MklNativeConv2D"``.
    """
    layer = name.split("/")
    scope = "/".join(layer[:3])
    if name.startswith("CpuExecutable"):
        return "GELU"  # XLA's compiled code: in the fast net, only the compiled GELUs
    if op_type == "Cast":
        return "casts"
    if "whiten" in scope and "gelu" not in scope:
        return "whitening"
    if "Conv2D" in op_type:
        return "3x3 convolutions"
    if "_bn" in scope:
        return "batch norm"
    if "gelu" in scope:
        return "GELU"
    if "pool" in scope or "MaxPool" in op_type:
        return "max pooling"
    if op_type == "AddN":
        return "gradient sums"
    if name.startswith(("sgd/", "Mul", "AddV2", "mul", "add", "Assign")) or "Variable" in op_type:
        return "optimizer, decay, Lookahead"
    return "loss and the rest"


def op_times(logdir: str) -> dict[str, float]:
    """Sum the executor's op times in a profiler trace, in milliseconds, by ``"name:type"``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    if not files:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                if ":" not in label or label.startswith(("Threadpool", "ExecutorState",
                                                         "CpuCompiler")):
                    continue  # bookkeeping, and XLA compiling (once, not every step)
                totals[label] += event.duration_ps / 1e9
    return dict(totals)


def group_table(times: dict[str, float], steps: int) -> dict[str, float]:
    """Milliseconds per step of each group of :data:`GROUPS`."""
    out = {g: 0.0 for g in GROUPS}
    for label, ms in times.items():
        name, op_type = label.rsplit(":", 1)
        out[op_group(name, op_type)] += ms / steps
    return out


def _whitened(whiten_patch: int) -> tuple[int, int]:
    """Size and channels of the whitening layer's maps: 32 - p + 1 pixels, 2 * 3 * p * p filters."""
    return 32 - whiten_patch + 1, 2 * 3 * whiten_patch**2


def conv_flops(widths: tuple[int, int, int], whiten_patch: int) -> float:
    """Forward FLOPs per image of the fast net's six 3x3 convolutions (2 per multiply-add)."""
    (size, cin), total = _whitened(whiten_patch), 0.0
    for width in widths:
        total += 2 * size * size * 9 * cin * width
        size //= 2
        total += 2 * size * size * 9 * width * width
        cin = width
    return total


def time_convolutions(batch: int, widths: tuple[int, int, int], whiten_patch: int,
                      precision: str, repeats: int) -> float:
    """Seconds per forward and backward pass of the six 3x3 convolutions and pools alone."""
    import keras
    import tensorflow as tf

    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    size, channels = _whitened(whiten_patch)
    layers: list[Any] = [keras.Input((size, size, channels), dtype=dtype)]
    for width in widths:
        layers += [keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype),
                   keras.layers.MaxPooling2D(2, dtype=dtype),
                   keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype)]
    convs = keras.Sequential(layers)
    x = tf.random.normal((batch, size, size, channels), dtype=dtype)

    @tf.function
    def step(x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(convs(x), "float32"))
        return tape.gradient(loss, [x, *convs.trainable_variables])

    step(x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        grads = step(x)
    _ = [g.numpy() for g in grads[:1]]
    return (time.perf_counter() - t0) / repeats


def build_parser() -> argparse.ArgumentParser:
    """The command line: the measurement's own flags and the recipe's (but ``--epochs``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps of the recipe")
    parser.add_argument("--profiled-steps", type=int, default=8)
    parser.add_argument("--precision", default="auto",
                        choices=["auto", "float32", "mixed_bfloat16"])
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="TensorFlow's inter-op threads (0: its default)")
    parser.add_argument("--label", default="", help="a name for this configuration")
    parser.add_argument("--out", default=None, help="path of the JSON results")
    add_hyperparameter_flags(parser, skip=("epochs",))  # one epoch of --steps + 1 batches
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the three measurements and write them as JSON."""
    args = build_parser().parse_args(argv)

    import numpy as np
    import tensorflow as tf

    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    from cifar_tutorial import recipes, runtime

    precision = runtime.choose_precision(args.precision)
    cpu = _common.describe_cpu()
    print(f"{cpu['cpu_model']}, {cpu['cores_available']} cores, bfloat16: "
          f"{cpu['matrix_extensions']}, precision {precision}", flush=True)
    hyp = hyperparameters_from(args, epochs=1.0)
    batch = hyp.batch_size
    rng = np.random.default_rng(0)
    n = batch * (args.steps + 1)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int32)

    _, history = recipes.train_fast(x, y, hyp=hyp, precision=precision, verbose=0)
    step_rate = history.summary["images_per_s"]
    print(f"the step: {step_rate:.0f} img/s over {history.summary['steps'] - 1} steps "
          f"({1000 * batch / step_rate:.0f} ms a step), "
          f"cores {history['cpu_per_wall'][0]:.2f}", flush=True)

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        recipes.train_fast(x[: batch * args.profiled_steps], y[: batch * args.profiled_steps],
                           hyp=hyp, precision=precision, verbose=0)
        tf.profiler.experimental.stop()
        times = op_times(logdir)
    groups = group_table(times, args.profiled_steps)
    total = sum(groups.values())
    print(f"{'ops, ms per step':<30}{'ms':>8}{'share':>8}")
    for group, ms in groups.items():
        print(f"{group:<30}{ms:8.1f}{ms / total:8.1%}")
    print(f"{'sum':<30}{total:8.1f}")
    top = sorted(times.items(), key=lambda kv: -kv[1])

    seconds = time_convolutions(batch, hyp.widths, hyp.whiten_patch, precision, repeats=10)
    flops = 3 * conv_flops(hyp.widths, hyp.whiten_patch) * batch
    conv_rate = batch / seconds
    print(f"the convolutions alone: {conv_rate:.0f} img/s "
          f"({1000 * seconds:.0f} ms a step, {flops / seconds / 1e9:.0f} GFLOP/s); "
          f"the step runs at {step_rate / conv_rate:.2f} of that", flush=True)

    result: dict[str, Any] = {
        **_common.run_metadata(None),
        "data": {"name": "random pixels", "format": "synthetic", "original": None},
        "label": args.label,
        "args": {**vars(args), "out": args.out and _common.portable_path(args.out)},
        "precision": precision,
        "hyperparameters": dataclasses.asdict(hyp),
        "step_images_per_s": step_rate,
        "step_ms": 1000 * batch / step_rate,
        "step_cores": history["cpu_per_wall"][0],
        "op_ms_per_step": groups,
        "ops_ms_per_step": {k: v / args.profiled_steps for k, v in top},
        "conv_images_per_s": conv_rate,
        "conv_ms": 1000 * seconds,
        "conv_gflop_per_s": flops / seconds / 1e9,
        "conv_forward_mflop_per_image": conv_flops(hyp.widths, hyp.whiten_patch) / 1e6,
    }
    if args.out:
        print(f"wrote {_common.write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
