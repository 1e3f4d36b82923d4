"""The book's figures. Every function returns its :class:`matplotlib.figure.Figure`.

Figures are built with the object-oriented Matplotlib API (no global state), so
they work in notebooks, in tests and in the command line alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np
from matplotlib.figure import Figure

from cifar_tutorial.train import History


def image_grid(
    images: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    predictions: Sequence[int] | None = None,
    ncols: int = 8,
    size: float = 1.3,
) -> Figure:
    """Show images with their class names (chapter 1).

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, 32, 32, 3)``, uint8 or floats in ``[0, 1]``.
    labels : sequence of int
        True labels.
    class_names : sequence of str
        Names in label order.
    predictions : sequence of int, optional
        Predicted labels; shown as "pred (true)", red where wrong.
    ncols : int
        Images per row.
    size : float
        Inches per image.

    Returns
    -------
    Figure
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(ncols * size, nrows * (size + 0.25)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], interpolation="nearest")
        title = class_names[int(labels[i])]
        color = "black"
        if predictions is not None:
            pred = int(predictions[i])
            if pred != int(labels[i]):
                title, color = f"{class_names[pred]}\n({title})", "crimson"
            else:
                title = class_names[pred]
        ax.set_title(title, fontsize=8, color=color)
    return fig


def class_balance(
    counts: Mapping[str, Sequence[int]] | Sequence[int], class_names: Sequence[str]
) -> Figure:
    """Bar chart of examples per class, one bar group per split (chapter 1).

    Parameters
    ----------
    counts : mapping of split name to counts, or one sequence of counts
        Counts per class.
    class_names : sequence of str
        Names in label order.

    Returns
    -------
    Figure
    """
    if not isinstance(counts, Mapping):
        counts = {"examples": counts}
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    x = np.arange(len(class_names))
    for j, (split, values) in enumerate(counts.items()):
        ax.bar(x + j * width - 0.4 + width / 2, values, width, label=split)
    ax.set_xticks(x, class_names, rotation=30)
    ax.set_ylabel("images")
    ax.legend()
    return fig


def training_curves(histories: History | Mapping[str, History], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training solid and validation dashed (chapter 6).

    Parameters
    ----------
    histories : History or mapping of label to History
        One run, or several to compare (chapter 3 compares output heads).
    title : str, optional
        Figure title.

    Returns
    -------
    Figure
    """
    if isinstance(histories, History):
        histories = {"": histories}
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = [f"C{i}" for i in range(10)]
    for (label, h), color in zip(histories.items(), colors):
        epochs = h["epoch"]
        for ax, key in zip(axes, ("loss", "accuracy")):
            prefix = f"{label} " if label else ""
            ax.plot(epochs, h[key], color=color, label=f"{prefix}train")
            val = np.asarray(h[f"val_{key}"], dtype=float)
            if not np.all(np.isnan(val)):
                ax.plot(epochs, val, color=color, linestyle="--", label=f"{prefix}validation")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], normalize: bool = True
) -> Figure:
    """Heat map of a confusion matrix, rows true class, columns prediction (chapter 6).

    Parameters
    ----------
    cm : numpy.ndarray
        Counts, ``(k, k)``.
    class_names : sequence of str
        Names in label order.
    normalize : bool
        Show each row as shares of its true class.

    Returns
    -------
    Figure
    """
    cm = np.asarray(cm, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    k = len(class_names)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            value = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            color = "white" if shown[i, j] > 0.6 * shown.max() else "black"
            ax.text(j, i, value, ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def mistakes(
    images: np.ndarray,
    y_true: Sequence[int],
    y_pred: Sequence[int],
    confidence: Sequence[float],
    class_names: Sequence[str],
    ncols: int = 8,
) -> Figure:
    """The most confident wrong predictions, "predicted 97% (true)" (chapter 6).

    Parameters
    ----------
    images : numpy.ndarray
        The misclassified images.
    y_true, y_pred : sequence of int
        True and predicted labels.
    confidence : sequence of float
        Probability given to the predicted class.
    class_names : sequence of str
        Names in label order.
    ncols : int
        Images per row.

    Returns
    -------
    Figure
    """
    fig = image_grid(images, y_true, class_names, predictions=y_pred, ncols=ncols, size=1.4)
    for ax, p, c in zip(fig.axes, y_pred, confidence):
        ax.set_title(f"{class_names[int(p)]} {c:.0%}\n({ax.get_title().split('(')[-1]}",
                     fontsize=8, color="crimson")
    return fig


def output_normalizations(
    scores: np.ndarray, outputs: Mapping[str, np.ndarray], class_names: Sequence[str] | None = None
) -> Figure:
    """Bars of one score vector after each output normalization (chapter 3).

    A dashed line at 0 and the title's sum show which outputs are distributions.

    Parameters
    ----------
    scores : numpy.ndarray
        The raw scores ``z``, shape ``(k,)``.
    outputs : mapping of name to numpy.ndarray
        The normalized vectors, e.g. ``{"softmax": ..., "L2": ...}``.
    class_names : sequence of str, optional
        Tick labels.

    Returns
    -------
    Figure
    """
    panels = {"scores z": np.asarray(scores), **{k: np.asarray(v) for k, v in outputs.items()}}
    fig = Figure(figsize=(3.0 * len(panels), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=False))
    k = len(scores)
    ticks = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    for i, (ax, (name, values)) in enumerate(zip(axes, panels.items())):
        colors = ["C3" if v < 0 else ("C7" if i == 0 else "C0") for v in values]
        ax.bar(range(k), values, color=colors)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(k), ticks, rotation=90 if k > 5 else 0, fontsize=8)
        ax.set_title(f"{name}\nsum = {values.sum():.3f}", fontsize=9)
    return fig


def temperature_curves(
    scores: np.ndarray,
    temperatures: Sequence[float],
    class_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> Figure:
    """Softmax of the same scores at several temperatures (chapter 3).

    Parameters
    ----------
    scores : numpy.ndarray
        Scores ``z``, shape ``(k,)``.
    temperatures : sequence of float
        Temperatures ``T``; base ``b`` corresponds to ``T = 1 / ln b``.
    class_names : sequence of str, optional
        Tick labels; class indices by default.
    labels : sequence of str, optional
        Legend entries, one per temperature; ``"T = 1.44"`` and so on by default.

    Returns
    -------
    Figure
    """
    from cifar_tutorial.maths import temperature_softmax

    if labels is None:
        labels = [f"T = {t:.3g}" for t in temperatures]
    if len(labels) != len(temperatures):
        raise ValueError(f"{len(labels)} labels for {len(temperatures)} temperatures")
    fig = Figure(figsize=(6.4, 3.2), layout="constrained")
    ax = fig.add_subplot()
    k = len(scores)
    width = 0.8 / len(temperatures)
    for j, (t, label) in enumerate(zip(temperatures, labels)):
        ax.bar(np.arange(k) + j * width - 0.4 + width / 2, temperature_softmax(scores, t),
               width, label=label)
    if class_names is not None:
        ax.set_xticks(range(k), list(class_names), rotation=30, fontsize=8)
    else:
        ax.set_xticks(range(k))
        ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.legend(fontsize=8)
    return fig


def bar_comparison(values: Mapping[str, float], ylabel: str, title: str | None = None) -> Figure:
    """Horizontal bars comparing one figure across runs (chapter 8).

    Parameters
    ----------
    values : mapping of str to float
        Run name to value (e.g. test accuracy).
    ylabel : str
        What the values are.
    title : str, optional
        Figure title.

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(6.4, 0.5 * len(values) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    names = list(values)
    ax.barh(names, [values[n] for n in names], color="C0")
    for i, n in enumerate(names):
        ax.text(values[n], i, f" {values[n]:.3f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if title:
        ax.set_title(title)
    return fig


def gradient_norms(
    norms: Sequence[float] | Mapping[str, Sequence[float]],
    clip_norm: float | None = None,
    title: str | None = None,
) -> Figure:
    """The global gradient norm at every training step, on a log scale (chapter 7).

    Parameters
    ----------
    norms : sequence of float, or mapping of label to sequence
        Norms of the whole gradient (all variables together) before clipping, one
        per step; several runs can be compared.
    clip_norm : float, optional
        The clipping threshold, drawn as a dotted line; steps above it are marked.
    title : str, optional
        Figure title.

    Returns
    -------
    Figure
    """
    if not isinstance(norms, Mapping):
        norms = {"": norms}
    fig = Figure(figsize=(6.4, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for (label, values), color in zip(norms.items(), [f"C{i}" for i in range(10)]):
        values = np.asarray(values, dtype=float)
        steps = np.arange(1, len(values) + 1)
        ax.plot(steps, values, color=color, linewidth=1, label=label or "gradient norm")
        if clip_norm is not None:
            above = values > clip_norm
            ax.plot(steps[above], values[above], "o", color=color, markersize=3)
    if clip_norm is not None:
        ax.axhline(clip_norm, color="black", linestyle=":", label=f"clip norm {clip_norm:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient norm")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def map_grid(
    maps: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 0.9,
    cmap: str = "gray",
    signed: bool | Sequence[bool] = False,
    title: str | None = None,
) -> Figure:
    """Small images side by side: filters, kernels or feature maps (chapter 5).

    Parameters
    ----------
    maps : numpy.ndarray
        ``(n, h, w)`` single-channel maps, each scaled to its own range, or
        ``(n, h, w, 3)`` RGB images in ``[0, 1]``.
    titles : sequence of str, optional
        One short title per map (shown at 9 pt).
    ncols : int
        Maps per row.
    size : float
        Inches per map.
    cmap : str
        Colour map for single-channel maps.
    signed : bool or sequence of bool
        Centre a single-channel map's colour scale on zero (for kernels and
        responses that can be negative); one flag for all maps or one per map.
    title : str, optional
        Figure title.

    Returns
    -------
    Figure
    """
    maps = np.asarray(maps)
    n = len(maps)
    if n == 0 or maps.ndim not in (3, 4):
        raise ValueError(f"expected a stack of maps (n, h, w) or (n, h, w, 3), got {maps.shape}")
    flags = [signed] * n if isinstance(signed, bool) else list(signed)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    extra = 0.3 if titles is not None else 0.05
    fig = Figure(figsize=(ncols * size, nrows * (size + extra) + (0.4 if title else 0)),
                 layout="constrained", dpi=150)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        if maps.ndim == 4:
            ax.imshow(np.clip(maps[i], 0, 1), interpolation="nearest")
        else:
            limit = float(np.abs(maps[i]).max()) or 1.0
            bounds = {"vmin": -limit, "vmax": limit} if flags[i] else {}
            ax.imshow(maps[i], cmap=cmap, interpolation="nearest", **bounds)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def enable_notebook_display(shell=None) -> bool:
    """Let IPython show the figures of this module as PNG images (chapter 1).

    The figures are built without ``pyplot``, so no Matplotlib backend registers a
    display hook for them: in a notebook, a cell ending in ``plots.image_grid(...)``
    would show only ``<Figure size ... with ... Axes>``. This registers the same
    PNG formatter that ``%matplotlib inline`` would, unless one is registered already.
    It runs once when the module is imported.

    Parameters
    ----------
    shell : IPython.core.interactiveshell.InteractiveShell, optional
        The shell to configure; by default the running one, if any.

    Returns
    -------
    bool
        True if a formatter for figures is in place afterwards.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return False
    shell = shell if shell is not None else get_ipython()
    if shell is None:
        return False
    png = shell.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
    except KeyError:
        png.for_type(Figure, partial(print_figure, fmt="png", base64=True, bbox_inches="tight"))
    return True


enable_notebook_display()
