"""Chapter 11's figures: calibration, corruptions and saliency.

They follow the page rules of :mod:`cifar_tutorial.plots` (its width, font sizes
and legend limit) and return a :class:`matplotlib.figure.Figure` like its figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cifar_tutorial import plots

__all__ = ["corruption_curves", "reliability_diagram", "saliency_grid"]


def reliability_diagram(
    tables: Mapping[str, object],
    ece: Mapping[str, float] | None = None,
    ncols: int = 2,
) -> Figure:
    """Accuracy against confidence, per confidence bin, one panel per model (chapter 11).

    Each bar spans its bin and rises to the bin's accuracy; the diagonal is
    perfect calibration. The hatched band runs from the bar's top to the bin's
    mean confidence: its gap, above the bar where the model is over-confident,
    inside it where the model is under-confident.
    Under each panel, the share of the images in each bin: the bins that weigh
    most in the ECE.

    Parameters
    ----------
    tables : mapping of str to ReliabilityTable
        Panel title to a table from
        :func:`cifar_tutorial.calibration.reliability_table`.
    ece : mapping of str to float, optional
        The expected calibration error of each panel, added to its title.
    ncols : int
        Panels per row (at most two fit the page).

    Returns
    -------
    Figure
    """
    names = list(tables)
    if not names:
        raise ValueError("no reliability tables to draw")
    ncols = max(1, min(ncols, len(names), 2))
    nrows = -(-len(names) // ncols)
    side = plots.PAGE_WIDTH / 2 - 0.15
    fig = Figure(figsize=(side * ncols, 4.3 * nrows), layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3, 1] * nrows)
    for i, name in enumerate(names):
        table = tables[name]
        row, col = divmod(i, ncols)
        ax = fig.add_subplot(grid[2 * row, col])
        share = fig.add_subplot(grid[2 * row + 1, col], sharex=ax)
        edges = np.asarray(table.edges)
        width = np.diff(edges)
        full = np.asarray(table.count) > 0
        accuracy = np.where(full, table.accuracy, 0.0)
        confidence = np.where(full, table.confidence, 0.0)
        ax.bar(edges[:-1], accuracy, width, align="edge", color="C0",
               edgecolor="white", label="accuracy")
        low = np.minimum(accuracy, confidence)
        ax.bar(edges[:-1][full], (np.abs(confidence - accuracy))[full], width[full],
               bottom=low[full], align="edge", fill=False, hatch="////",
               edgecolor="C3", linewidth=0.8, label="gap")
        ax.plot([0, 1], [0, 1], color="black", linestyle=":", label="calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        title = name if ece is None or name not in ece else f"{name}\nECE {ece[name]:.3f}"
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax.tick_params(labelbottom=False)
        counts = np.asarray(table.count, dtype=float)
        share.bar(edges[:-1], counts / max(counts.sum(), 1.0), width, align="edge",
                  color="C7", edgecolor="white")
        share.set_xlabel("confidence (top-class probability)")
        share.set_ylabel("share")
    return fig


def corruption_curves(
    accuracy: Mapping[str, Mapping[str, Sequence[float]]],
    ncols: int = 3,
) -> Figure:
    """Test accuracy against the severity of each corruption, one panel per corruption (chapter 11).

    Parameters
    ----------
    accuracy : mapping of str to mapping of str to sequence of float
        Model name to {corruption name: accuracies at severities 0 (clean) to 5}.
        At most :data:`~cifar_tutorial.plots.MAX_LEGEND` models.
    ncols : int
        Panels per row.

    Returns
    -------
    Figure
    """
    runs = list(accuracy)
    if not runs or len(runs) > plots.MAX_LEGEND:
        raise ValueError(f"need 1 to {plots.MAX_LEGEND} models, got {len(runs)}")
    names = list(accuracy[runs[0]])
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(plots.PAGE_WIDTH, 2.3 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True)).ravel()
    for ax, name in zip(axes, names):
        for j, run in enumerate(runs):
            values = np.asarray(accuracy[run][name], dtype=float)
            ax.plot(np.arange(len(values)), values, marker="o", markersize=3,
                    color=f"C{j}", label=run)
        ax.set_title(name.replace("_", " "))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        plots.integer_ticks(ax)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    for ax in axes[::ncols]:
        ax.set_ylabel("test accuracy")
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel("severity")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center",
               ncols=min(len(runs), 3))
    return fig


def saliency_grid(
    images: np.ndarray,
    maps: Mapping[str, np.ndarray],
    titles: Sequence[str] | None = None,
    size: float = 0.9,
) -> Figure:
    """Images in the first row, and each kind of map laid over them in the rows below (chapter 11).

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, h, w, 3)`` uint8 or ``[0, 1]`` float images, at most eight.
    maps : mapping of str to numpy.ndarray
        Row label to ``(n, h, w)`` maps in ``[0, 1]`` (from
        :mod:`cifar_tutorial.saliency`), drawn in a heat colour map over the
        dimmed image.
    titles : sequence of str, optional
        One short title per image (9 pt).
    size : float
        Inches per image.

    Returns
    -------
    Figure
    """
    images = np.asarray(images)
    n = len(images)
    widest = int((plots.PAGE_WIDTH - 0.8) // size)
    if n == 0 or n > widest:
        raise ValueError(f"need 1 to {widest} images, got {n}")
    rows = ["image", *maps]
    extra = 0.3 if titles is not None else 0.05
    fig = Figure(figsize=(n * size + 0.8, len(rows) * (size + 0.05) + extra), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), n, squeeze=False))
    shown = images / 255.0 if images.dtype == np.uint8 else images
    for r, row in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == "image":
                ax.imshow(np.clip(shown[i], 0, 1), interpolation="nearest")
            else:
                ax.imshow(np.clip(shown[i], 0, 1).mean(axis=-1), cmap="gray", alpha=0.5,
                          interpolation="nearest")
                ax.imshow(maps[row][i], cmap="inferno", vmin=0, vmax=1, alpha=0.6,
                          interpolation="bilinear")
            if r == 0 and titles is not None:
                ax.set_title(titles[i], fontsize=plots.GRID_TITLE_SIZE)
        axes[r, 0].set_ylabel(row, fontsize=plots.GRID_TITLE_SIZE)
    return fig
