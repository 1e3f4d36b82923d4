"""The book's figures. Every function returns its :class:`matplotlib.figure.Figure`.

Figures are built with the object-oriented Matplotlib API (no global state), so
they work in notebooks, in tests and in the command line alike.

They are sized for the page: the book is read in a 1280-px browser window whose
text column is about 750 px wide (``_static/page-width.css``). A PNG of :data:`DPI`
dots per inch is shown at one CSS pixel (1/96 inch) per dot, shrunk to the column
when wider, so a figure up to :data:`PAGE_WIDTH` inches wide keeps its fonts at
least at their size in points. So no figure is wider than that, no text is
smaller than 9 pt (Matplotlib's 10 pt for most of it, :data:`GRID_TITLE_SIZE`
under small images), no legend has more than :data:`MAX_LEGEND` entries (more
runs go into more panels), epochs are whole numbers, and images are rendered at
:data:`DPI` dots per inch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import TextToPath
from matplotlib.ticker import MaxNLocator

from cifar_tutorial.records import History

DPI = 150
"""Resolution of the figures' PNG images, in the notebooks and in the files the
command line writes: sharp on high-density screens."""

PAGE_WIDTH = 7.5
"""Widest figure, in inches. At 150 dpi it is about 1,142 px wide with its margins,
shown in the text column (768 px measured in Chromium at a 1280-px window, about 750
beside a scroll bar) at 750 / 1,142 of that: 1.03 times its size in points."""

GRID_TITLE_SIZE = 9
"""Font size of the titles under the small images of an image grid, in points."""

MIN_CELL = 0.75
"""Narrowest image of a grid, in inches, in which a 9-pt class name ("automobile") fits."""

MAX_LEGEND = 6
"""Most entries in one legend; more runs are split into panels."""

MARKER_EPOCHS = 20
"""Training curves of up to this many epochs mark each epoch with a dot, so that
the points of a short run (one epoch is a single point) are seen."""


def _groups(items: Sequence, size: int = MAX_LEGEND) -> list[list]:
    """Split ``items`` into consecutive groups of at most ``size``, one per panel."""
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def integer_ticks(ax) -> None:
    """Put ticks on whole numbers only (epochs, steps)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _text_width(text: str, size: float = GRID_TITLE_SIZE) -> float:
    """Width in inches of one line of ``text`` in Matplotlib's default font."""
    width, _, _ = TextToPath().get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False)
    return width / 72


def _grid_shape(n: int, ncols: int, size: float, width: float = PAGE_WIDTH) -> tuple[int, int, float]:
    """Rows, columns and inches per image of a grid of ``n`` images no wider than ``width``.

    Images shrink to fit ``width`` (the page, less any row labels), but not below
    :data:`MIN_CELL`: a grid asked for more columns than that allows is rewrapped
    into balanced rows.
    """
    if n == 0:
        raise ValueError("no images to show")
    ncols = max(1, min(ncols, n))
    widest = max(1, int(width // MIN_CELL))
    if ncols > widest:
        ncols = -(-n // -(-n // widest))
    return -(-n // ncols), ncols, min(size, width / ncols)


def _two_lines_if_wide(first: str, second: str, width: float) -> str:
    """``first + second`` on one line if it fits in ``width`` inches, else on two."""
    if _text_width(first + second) <= 0.95 * width:
        return first + second
    return f"{first}\n{second}"


def _grid(
    images: np.ndarray,
    shape: tuple[int, int, float],
    titles: Sequence[str],
    colors: Sequence[str],
    key: str | None = None,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """Draw ``images`` in a grid of ``shape`` (from :func:`_grid_shape`) with titles,
    and ``row_labels`` left of the rows."""
    nrows, ncols, cell = shape
    lines = max((t.count("\n") + 1 for t in titles), default=1)
    title_height = lines * 1.3 * GRID_TITLE_SIZE / 72 + 0.06
    key_height = 0.35 if key else 0.0
    label_width = _row_label_width(row_labels)
    fig = Figure(figsize=(ncols * cell + label_width,
                          nrows * (cell + title_height) + key_height),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= len(images):
            continue
        ax.imshow(images[i], interpolation="nearest")
        ax.set_title(titles[i], fontsize=GRID_TITLE_SIZE, color=colors[i])
    for row, label in enumerate(row_labels or ()):
        ax = axes[row * ncols]
        ax.text(-0.08, 0.5, label, transform=ax.transAxes, ha="right", va="center",
                fontsize=GRID_TITLE_SIZE + 1)
    if key:
        fig.suptitle(key, fontsize=10)
    return fig


def _row_label_width(row_labels: Sequence[str] | None) -> float:
    """Inches kept left of a grid for its row labels (none without labels)."""
    if not row_labels:
        return 0.0
    return max(_text_width(label, GRID_TITLE_SIZE + 1) for label in row_labels) + 0.15


def image_grid(
    images: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    predictions: Sequence[int] | None = None,
    ncols: int = 8,
    size: float = 1.3,
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """Show images with their class names (chapter 1).

    The grid is at most :data:`PAGE_WIDTH` wide: images shrink to fit, and a grid
    of more than 10 columns is rewrapped into balanced rows.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, 32, 32, 3)``, uint8 or floats in ``[0, 1]``.
    labels : sequence of int
        True labels.
    class_names : sequence of str
        Names in label order.
    predictions : sequence of int, optional
        Predicted labels; a wrong one is shown as "true→predicted" in red.
    ncols : int
        Images per row.
    size : float
        Inches per image, at most.
    row_labels : sequence of str, optional
        One label per row, written left of it (chapter 5 labels the original
        images and their augmented versions); the rows are then kept as asked.

    Returns
    -------
    Figure

    Raises
    ------
    ValueError
        If ``row_labels`` does not name every row of ``ncols`` images, or the rows
        would not fit the page.
    """
    width = PAGE_WIDTH - _row_label_width(row_labels)
    shape = _grid_shape(len(images), ncols, size, width)
    if row_labels is not None and (shape[1] != min(ncols, len(images))
                                   or len(row_labels) != shape[0]):
        raise ValueError(
            f"{len(row_labels)} row labels for {len(images)} images in rows of {ncols}: "
            f"give one label per row, with at most {int(width // MIN_CELL)} images a row")
    titles, colors = [], []
    for i, label in enumerate(labels[: len(images)]):
        true = class_names[int(label)]
        pred = true if predictions is None else class_names[int(predictions[i])]
        wrong = pred != true
        titles.append(_two_lines_if_wide(f"{true}→", pred, shape[2]) if wrong else true)
        colors.append("crimson" if wrong else "black")
    key = "red: true class→predicted class" if "crimson" in colors else None
    return _grid(images, shape, titles, colors, key, row_labels)


def colour_filters(
    filters: np.ndarray,
    titles: Sequence[str],
    ncols: int = 6,
    size: float = 1.1,
) -> Figure:
    """Colour filters drawn on one common symmetric scale (chapter 9).

    Every filter value ``w`` is shown as ``0.5 + 0.5 * w / m`` in its channel, with
    ``m`` the largest ``|w|`` of all the filters together: grey is zero in every
    channel, and one shade means the same value in every filter, so a filter with
    equal weights in red, green and blue is drawn grey, not tinted, and a weak
    filter looks weak. Pass filters of the same norm (for the patch-whitening
    layer, the eigenvectors) to compare their patterns.

    Parameters
    ----------
    filters : numpy.ndarray
        ``(n, h, w, 3)`` weights of any sign.
    titles : sequence of str
        One short title per filter (e.g. its eigenvalue).
    ncols : int
        Filters per row.
    size : float
        Inches per filter, at most.

    Returns
    -------
    Figure
    """
    filters = np.asarray(filters, dtype=float)
    if filters.ndim != 4 or filters.shape[-1] != 3:
        raise ValueError(f"expected colour filters (n, h, w, 3), got {filters.shape}")
    if len(titles) != len(filters):
        raise ValueError(f"{len(titles)} titles for {len(filters)} filters")
    limit = float(np.abs(filters).max()) or 1.0
    shape = _grid_shape(len(filters), ncols, size)
    key = f"one scale for all filters: grey 0, full colour ±{limit:.3g}"
    return _grid(0.5 + 0.5 * filters / limit, shape, list(titles), ["black"] * len(titles),
                 key)


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
    fig = Figure(figsize=(PAGE_WIDTH, 3.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    x = np.arange(len(class_names))
    for j, (split, values) in enumerate(counts.items()):
        ax.bar(x + j * width - 0.4 + width / 2, values, width, label=split)
    ax.set_xticks(x, class_names, rotation=30)
    ax.set_ylabel("images")
    if len(counts) > 1:  # above the axes, where no bar can be hidden under it
        fig.legend(loc="outside upper center", ncols=len(counts), frameon=False)
    return fig


def training_curves(histories: History | Mapping[str, History], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, training solid and validation dashed (chapters 3, 9).

    One row of two panels per group of up to :data:`MAX_LEGEND` runs. The keys sit
    outside the panels, where they hide no curve: the run names above each row, the
    line styles (training, validation) below it. Epoch ticks are whole numbers, and
    runs of up to :data:`MARKER_EPOCHS` epochs mark each epoch (training filled,
    validation hollow).

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
    if not histories:
        raise ValueError("no training history to plot")
    groups = _groups(histories.items())
    named = any(label for label in histories)
    row_height = 3.0 + (0.35 if named else 0.0)
    fig = Figure(figsize=(PAGE_WIDTH, row_height * len(groups) + (0.3 if title else 0.0)),
                 layout="constrained")
    rows = np.atleast_1d(fig.subfigures(len(groups), 1, squeeze=False)).ravel()
    for sub, group in zip(rows, groups):
        _curve_row(sub, group)
    if title:
        fig.suptitle(title)
    return fig


def _curve_row(sub, group: list[tuple[str, History]]) -> None:
    """Draw one row of :func:`training_curves`: loss and accuracy of up to six runs."""
    row = sub.subplots(1, 2)
    has_val, runs = False, []
    marked = any(len(h["epoch"]) <= MARKER_EPOCHS for _, h in group)
    for (label, h), color in zip(group, [f"C{i}" for i in range(MAX_LEGEND)]):
        epochs = h["epoch"]
        style = {"color": color, "marker": "o" if len(epochs) <= MARKER_EPOCHS else None,
                 "markersize": 4}
        for ax, key in zip(row, ("loss", "accuracy")):
            ax.plot(epochs, h[key], label=label or "training", **style)
            val = np.asarray(h[f"val_{key}"], dtype=float)
            if not np.all(np.isnan(val)):
                has_val = True
                ax.plot(epochs, val, linestyle="--",
                        label=f"{label} (validation)" if label else "validation",
                        markerfacecolor="white", **style)
        if label:
            runs.append(Line2D([], [], color=color, linewidth=3, label=label))
    for ax, key in zip(row, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        integer_ticks(ax)
        seen = {e for _, h in group for e in h["epoch"]}
        if len(seen) == 1:  # one epoch: centre its points
            ax.set_xlim(min(seen) - 1, min(seen) + 1)
    if runs:
        sub.legend(handles=runs, loc="outside upper center", ncols=min(3, len(runs)),
                   frameon=False)
    key_style = {"color": "0.3", "marker": "o" if marked else None, "markersize": 4}
    key_lines = [Line2D([], [], label="training", **key_style)]
    if has_val:
        key_lines.append(Line2D([], [], linestyle="--", markerfacecolor="white",
                                label="validation", **key_style))
    sub.legend(handles=key_lines, loc="outside lower center", ncols=2, frameon=False)


def confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], normalize: bool = True
) -> Figure:
    """Heat map of a confusion matrix, rows true class, columns prediction (chapter 7).

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
            ax.text(j, i, value, ha="center", va="center", fontsize=9, color=color)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def mistakes(
    images: np.ndarray,
    y_true: Sequence[int],
    y_pred: Sequence[int],
    confidence: Sequence[float],
    class_names: Sequence[str],
    ncols: int = 6,
) -> Figure:
    """The most confident wrong predictions, titled "cat→dog 0.93" (chapter 7).

    Each title gives the true class, the predicted class and the probability the
    model gave its prediction; a key above the grid says so. A title too wide for
    its image breaks after the arrow.

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
        Images per row; with six, the longest titles ("automobile 0.93") fit.

    Returns
    -------
    Figure
    """
    shape = _grid_shape(len(images), ncols, 1.4)
    titles = [
        _two_lines_if_wide(f"{class_names[int(t)]}→", f"{class_names[int(p)]} {c:.2f}", shape[2])
        for t, p, c in zip(y_true, y_pred, confidence)
    ]
    key = "true class→predicted class, and the probability given to the prediction"
    return _grid(images, shape, titles, ["crimson"] * len(titles), key)


def output_normalizations(
    scores: np.ndarray, outputs: Mapping[str, np.ndarray], class_names: Sequence[str] | None = None
) -> Figure:
    """Bars of one score vector after each output normalization (chapter 3).

    A line at 0 and the title's sum show which outputs are distributions.
    The panels are laid out two per row.

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
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(PAGE_WIDTH * ncols / 2, 3.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=False)).ravel()
    k = len(scores)
    ticks = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    for i, (ax, (name, values)) in enumerate(zip(axes, panels.items())):
        colors = ["C3" if v < 0 else ("C7" if i == 0 else "C0") for v in values]
        ax.bar(range(k), values, color=colors)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(k), ticks, rotation=90 if k > 5 else 0)
        ax.set_title(f"{name}\nsum = {values.sum():.3f}", fontsize=11)
    return fig


def temperature_curves(
    scores: np.ndarray,
    temperatures: Sequence[float],
    class_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> Figure:
    """Softmax of the same scores at several temperatures (chapter 3).

    More than :data:`MAX_LEGEND` temperatures are spread over panels, one above
    the other.

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
    groups = _groups(zip(temperatures, labels))
    fig = Figure(figsize=(6.4, 3.2 * len(groups)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(groups), 1)).ravel()
    k = len(scores)
    for ax, group in zip(axes, groups):
        width = 0.8 / len(group)
        for j, (t, label) in enumerate(group):
            ax.bar(np.arange(k) + j * width - 0.4 + width / 2, temperature_softmax(scores, t),
                   width, label=label)
        if class_names is not None:
            ax.set_xticks(range(k), list(class_names), rotation=30)
        else:
            ax.set_xticks(range(k))
            ax.set_xlabel("class")
        ax.set_ylabel("probability")
        ax.legend()
    return fig


def bar_comparison(values: Mapping[str, float], ylabel: str, title: str | None = None) -> Figure:
    """Horizontal bars comparing one figure across runs (chapter 9).

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
        ax.text(values[n], i, f" {values[n]:.3f}", va="center")
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
    """The global gradient norm at every training step, on a log scale (chapter 8).

    Up to five runs share a panel (with the clipping line, six legend entries);
    more go into further panels, one above the other. Each panel's key sits above
    it, outside the data.

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
    groups = _groups(norms.items(), MAX_LEGEND - 1)
    fig = Figure(figsize=(6.4, 3.2 * len(groups)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(groups), 1)).ravel()
    for ax, group in zip(axes, groups):
        for (label, values), color in zip(group, [f"C{i}" for i in range(MAX_LEGEND)]):
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
        integer_ticks(ax)
        # The key sits above the panel, where it hides no step.
        entries = len(ax.get_legend_handles_labels()[0])
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(3, entries),
                  frameon=False, borderaxespad=0.2)
    if title:
        fig.suptitle(title)
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
    """Small images side by side: filters, kernels or feature maps (chapter 6).

    Each map sits in a thin grey frame, so that white pixels at its edge stay
    visible on a white page.

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
                 layout="constrained", dpi=DPI)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        # A thin frame, no ticks: white pixels stay visible against the page.
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("0.6")
            spine.set_linewidth(0.6)
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
    PNG formatter that ``%matplotlib inline`` would, at :data:`DPI` dots per inch,
    unless one is registered already.
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
        png.for_type(Figure, partial(print_figure, fmt="png", base64=True,
                                    bbox_inches="tight", dpi=DPI))
    return True


enable_notebook_display()
