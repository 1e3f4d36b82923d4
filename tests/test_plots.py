"""The figures of the book: cifar_tutorial.plots."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cifar_tutorial import data, plots
from cifar_tutorial.records import History


def _history(epochs: int = 3, scale: float = 1.0) -> History:
    """A made-up run of ``epochs`` epochs; ``scale`` tells runs apart."""
    return History([{"epoch": e, "loss": scale * 2.0 / e, "accuracy": 0.1 * e / scale,
                     "val_loss": scale * 2.1 / e, "val_accuracy": 0.09 * e / scale,
                     "lr": 1e-3, "seconds": 1.0} for e in range(1, epochs + 1)])


def test_figures_are_returned() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(5, 32, 32, 3), dtype=np.uint8)
    names = [f"c{i}" for i in range(10)]
    figs = {
        "grid": plots.image_grid(images, [0, 1, 2, 3, 4], names, ncols=3),
        "balance": plots.class_balance({"train": [5] * 10, "test": [1] * 10}, names),
        "curves": plots.training_curves({"a": _history(), "b": _history()}),
        "confusion": plots.confusion_matrix(np.eye(10) * 5, names),
        "mistakes": plots.mistakes(images[:2], [0, 1], [1, 0], [0.9, 0.8], names),
        "heads": plots.output_normalizations(np.array([1.0, -1.0, 2.0]), {"softmax": np.array([0.3, 0.1, 0.6])}),
        "temperature": plots.temperature_curves(np.array([1.0, 2.0, 3.0]), [0.5, 1, 2]),
        "bars": plots.bar_comparison({"x": 0.5, "y": 0.7}, "accuracy"),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
    assert len([ax for ax in figs["grid"].axes if ax.images]) == 5
    assert len(figs["curves"].axes) == 2
    assert len(figs["curves"].axes[0].lines) == 4  # two runs x (train, validation)
    assert figs["mistakes"].axes[0].get_title() == "c0→c1 0.90"
    with pytest.raises(ValueError):
        plots.image_grid(images[:0], [], names)


# --- figures readable at page width -------------------------------------------------
# The book is read in a 1280-px browser window; its text column measured 768 px in
# headless Chromium (no scroll bar), so about 750 px in a browser with one
# (tests/test_book.py measures it on every page).
# A PNG is shown at its own width in CSS pixels (96 to the inch), shrunk to the column
# if wider; so a font of s points drawn at DPI dots per inch reaches the reader at
# s * DPI / 96 * min(1, 750 / PNG width) points.

COLUMN_PX = 750
CSS_PX_PER_INCH = 96
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


def _notebook_png(fig: Figure) -> bytes:
    """The PNG a notebook shows for ``fig``, through the formatter the module registers."""
    from IPython.core.formatters import DisplayFormatter

    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    assert plots.enable_notebook_display(shell)
    shown, _ = shell.display_formatter.format(fig)
    return base64.b64decode(shown["image/png"])


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _texts(fig: Figure) -> list:
    """Every visible, non-empty text of ``fig`` once drawn (ticks, titles, legends ...)."""
    from matplotlib.text import Text

    fig.draw_without_rendering()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
            and t.get_figure(root=True) is fig]


def _page_scale(fig: Figure) -> float:
    """Points on the page per point in ``fig``, for the PNG the notebook shows."""
    width_px, _ = _png_size(_notebook_png(fig))
    return plots.DPI / CSS_PX_PER_INCH * min(1.0, COLUMN_PX / width_px)


def _book_figures() -> dict[str, Figure]:
    """Each figure of the book as its chapter calls it, with the longest class names."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(30, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(30) % 10
    z = np.array([2.0, 1.0, -0.5, 3.0, 0.1, -2.0, 0.5, 1.5, -1.0, 0.2])
    heads = {"five heads": {h: _history(8, 1 + i / 10) for i, h in enumerate(
        ["softmax", "softmax_base", "l2", "l1_relu", "logits"])}}
    return {
        "grid of 30 (chapter 1)": plots.image_grid(images, labels, CLASS_NAMES, ncols=10),
        "class means (chapter 1)": plots.image_grid(images[:10], labels[:10], CLASS_NAMES,
                                                    ncols=10),
        "whitening filters (chapter 9)": plots.colour_filters(
            rng.normal(size=(12, 2, 2, 3)), [f"{e:.3g}" for e in np.geomspace(9.9, 1e-4, 12)],
            ncols=12, size=0.8),
        "augmentation (chapter 5)": plots.image_grid(
            images[:24], labels[:24] % 8, CLASS_NAMES, ncols=8,
            row_labels=["original", "epoch 1", "epoch 2"]),
        "balance": plots.class_balance({"train": [5000] * 10, "test": [1000] * 10}, CLASS_NAMES),
        "curves, one run": plots.training_curves(_history(20), title="Seed CNN, Adam 1e-4"),
        "curves, five heads (chapter 3)": plots.training_curves(heads["five heads"]),
        "confusion": plots.confusion_matrix(rng.integers(0, 900, (10, 10)), CLASS_NAMES),
        "mistakes": plots.mistakes(images[:16], labels[:16], (labels[:16] + 1) % 10,
                                   rng.random(16), CLASS_NAMES),
        "four heads (chapter 3)": plots.output_normalizations(
            z, {r"$z \,/\, \|z\|_2$": z / np.linalg.norm(z),
                r"$\mathrm{relu}(z) \,/\, \|\mathrm{relu}(z)\|_1$": np.maximum(z, 0) / 8.3,
                r"$\mathrm{softmax}(z)$": np.exp(z) / np.exp(z).sum()},
            class_names=CLASS_NAMES),
        "temperature": plots.temperature_curves(z, [1.443, 1.0, 0.434], class_names=CLASS_NAMES),
        "bars": plots.bar_comparison({f"run {i}": 0.5 + i / 20 for i in range(6)}, "accuracy"),
        "gradient norms": plots.gradient_norms({"Adam, learning rate 1e-3": rng.random(200) + 1},
                                               clip_norm=1.5),
    }


@pytest.fixture(scope="module")
def book_figures() -> dict[str, Figure]:
    return _book_figures()


def test_figures_fit_the_text_column(book_figures) -> None:
    for name, fig in book_figures.items():
        assert fig.get_figwidth() <= plots.PAGE_WIDTH + 1e-9, name


def test_every_text_is_at_least_9_points_on_the_page(book_figures) -> None:
    for name, fig in book_figures.items():
        texts = _texts(fig)
        assert texts, name
        scale = _page_scale(fig)
        for text in texts:
            size = text.get_fontsize()
            assert size >= 9, (name, text.get_text(), size)
            assert size * scale >= 9, (name, text.get_text(), size * scale)


def test_the_page_rule_fails_a_wide_figure() -> None:
    # The measure itself: the old 10-inch training curves shrink a 10-pt font to 7.8 pt.
    wide = Figure(figsize=(10, 3.6), layout="constrained")
    wide.add_subplot().set_title("loss", fontsize=10)
    assert 10 * _page_scale(wide) == pytest.approx(10 * 150 / 96 * 750 / 1500, rel=0.05)
    assert 10 * _page_scale(wide) < 9


def test_notebook_png_is_rendered_at_150_dpi(book_figures) -> None:
    assert plots.DPI >= 150
    fig = book_figures["confusion"]
    width, height = _png_size(_notebook_png(fig))
    # bbox_inches="tight" trims the margins a little
    assert width == pytest.approx(fig.get_figwidth() * plots.DPI, rel=0.05)
    assert height == pytest.approx(fig.get_figheight() * plots.DPI, rel=0.05)


def _legends(fig: Figure) -> list:
    """Every legend of ``fig``: on its axes, on the figure and on its subfigures."""
    from matplotlib.legend import Legend

    return [legend for legend in fig.findobj(Legend)]


def test_at_most_six_legend_entries_per_legend(book_figures) -> None:
    eight = plots.training_curves({f"run {i}": _history(3, 1 + i / 10) for i in range(8)})
    temps = plots.temperature_curves(np.arange(4.0), [0.5 + i / 4 for i in range(9)])
    norms = plots.gradient_norms({f"lr {i}": np.ones(5) * (i + 1) for i in range(7)}, clip_norm=3)
    for name, fig in {**book_figures, "eight runs": eight, "nine temperatures": temps,
                      "seven norms": norms}.items():
        for legend in _legends(fig):
            assert 1 <= len(legend.get_texts()) <= plots.MAX_LEGEND, name
    assert len(eight.axes) == 4          # two rows of (loss, accuracy): 6 runs + 2 runs
    run_keys = [[t.get_text() for t in legend.get_texts()] for legend in _legends(eight)
                if legend.get_texts()[0].get_text().startswith("run")]
    assert [len(k) for k in run_keys] == [6, 2]
    assert sorted(sum(run_keys, [])) == [f"run {i}" for i in range(8)]
    assert len(temps.axes) == 2 and len(norms.axes) == 2
    bars = sum(len(ax.patches) for ax in temps.axes)
    assert bars == 9 * 4                 # every temperature drawn once


def _overlaps(box, other) -> bool:
    return box.x0 < other.x1 and other.x0 < box.x1 and box.y0 < other.y1 and other.y0 < box.y1


@pytest.mark.parametrize("runs", [1, 2, 5, 8])
def test_training_curve_keys_sit_outside_the_panels(runs: int) -> None:
    histories = ({f"VGG + BN, run {i}": _history(8, 1 + i / 10) for i in range(runs)}
                 if runs > 1 else _history(8))
    fig = plots.training_curves(histories, title="a title")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    legends = _legends(fig)
    assert all(ax.get_legend() is None for ax in fig.axes)
    texts = [t.get_text() for legend in legends for t in legend.get_texts()]
    assert texts.count("training") == texts.count("validation") == len(fig.axes) // 2
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not _overlaps(box, ax.get_window_extent(renderer)), texts
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width     # on the figure, not cut off
    if runs > 1:
        assert sum(t.startswith("VGG") for t in texts) == runs


def _visible_ticks(ax) -> np.ndarray:
    low, high = sorted(ax.get_xlim())
    ticks = np.asarray(ax.get_xticks())
    return ticks[(ticks >= low - 1e-9) & (ticks <= high + 1e-9)]


@pytest.mark.parametrize("epochs", [1, 2, 3, 7, 20, 60])
def test_epoch_ticks_are_whole_numbers(epochs: int) -> None:
    fig = plots.training_curves(_history(epochs))
    fig.draw_without_rendering()
    for ax in fig.axes:
        ticks = _visible_ticks(ax)
        assert len(ticks) >= 1
        np.testing.assert_array_equal(ticks, np.round(ticks))
        assert all("." not in label.get_text() for label in ax.get_xticklabels())
        low, high = ax.get_xlim()
        assert low < 1 and high > epochs    # every epoch inside the panel


def test_one_epoch_run_shows_its_points() -> None:
    fig = plots.training_curves(_history(1))
    fig.draw_without_rendering()
    for ax in fig.axes:
        assert 1 in _visible_ticks(ax)
        assert len(ax.lines) == 2 and all(line.get_marker() == "o" for line in ax.lines)
        low, high = ax.get_xlim()
        assert low <= 0.5 and high >= 1.5   # the point is not squeezed against an edge
    long = plots.training_curves(_history(60))
    assert all(line.get_marker() in (None, "None", "") for line in long.axes[0].lines)


def test_gradient_norm_steps_are_whole_numbers(book_figures) -> None:
    fig = book_figures["gradient norms"]
    ticks = _visible_ticks(fig.axes[0])
    np.testing.assert_array_equal(ticks, np.round(ticks))


def _titles_overlap(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of image titles in one row whose drawn boxes overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [(ax.title.get_text(), ax.title.get_window_extent(renderer), ax)
             for ax in fig.axes if ax.images and ax.title.get_text()]
    clashes = []
    for (a, box_a, ax_a), (b, box_b, ax_b) in zip(boxes, boxes[1:]):
        same_row = abs(ax_a.get_position().y0 - ax_b.get_position().y0) < 1e-6
        if same_row and box_a.x1 > box_b.x0:
            clashes.append((a, b))
    return clashes


def test_mistake_titles_read_true_arrow_predicted_probability() -> None:
    images = np.zeros((16, 32, 32, 3), dtype=np.uint8)
    y_true = [1, 3] + [0] * 14
    y_pred = [0, 5] + [1] * 14
    fig = plots.mistakes(images, y_true, y_pred, [0.934] + [0.5] * 15, CLASS_NAMES)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == 16
    assert titles[0] == "automobile→\nairplane 0.93"     # too wide for one line: breaks
    assert titles[1] == "cat→dog 0.50"                    # fits
    assert fig.get_suptitle().startswith("true class→predicted class")
    assert fig.get_figwidth() <= plots.PAGE_WIDTH
    assert _titles_overlap(fig) == []


def test_image_grids_rewrap_instead_of_shrinking_below_readable(book_figures) -> None:
    filters = book_figures["whitening filters (chapter 9)"]
    rows = {round(ax.get_position().y0, 6) for ax in filters.axes}
    assert len(filters.axes) == 12 and len(rows) == 2      # 12 asked in one row: 2 x 6
    grid = book_figures["grid of 30 (chapter 1)"]
    rows = {round(ax.get_position().y0, 6) for ax in grid.axes if ax.images}
    assert len(rows) == 3                                  # 10 columns are kept
    for fig in (filters, grid, book_figures["class means (chapter 1)"]):
        assert _titles_overlap(fig) == []
    wrong = plots.image_grid(np.zeros((2, 32, 32, 3)), [1, 2], CLASS_NAMES, predictions=[1, 3])
    assert [ax.get_title() for ax in wrong.axes] == ["automobile", "bird→cat"]
    assert "true class→predicted class" in wrong.get_suptitle()


def test_output_normalizations_two_panels_a_row(book_figures) -> None:
    fig = book_figures["four heads (chapter 3)"]
    assert len(fig.axes) == 4
    assert len({round(ax.get_position().y0, 6) for ax in fig.axes}) == 2


def test_edge_cases_of_the_command_line_figures() -> None:
    # Training without a validation split: NaN validation metrics, no "validation" entry.
    no_val = History([{"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": float("nan"),
                       "val_accuracy": float("nan"), "lr": 1e-3, "seconds": 1.0}])
    fig = plots.training_curves(no_val)
    assert [[t.get_text() for t in legend.get_texts()] for legend in _legends(fig)] == [
        ["training"]]
    one = plots.mistakes(np.zeros((1, 32, 32, 3), dtype=np.uint8), [3], [5], [0.5], CLASS_NAMES)
    assert [ax.get_title() for ax in one.axes] == ["cat→dog 0.50"]
    assert one.get_figwidth() <= plots.PAGE_WIDTH
    with pytest.raises(ValueError, match="no training history"):
        plots.training_curves({})
    with pytest.raises(ValueError, match="no images"):
        plots.mistakes(np.zeros((0, 32, 32, 3)), [], [], [], CLASS_NAMES)


# --------------------------------------------------------------------------- chapters' figures


def _fake_shell():
    from IPython.core.formatters import DisplayFormatter

    return SimpleNamespace(display_formatter=DisplayFormatter())


def test_enable_notebook_display_shows_figures_as_png():
    pytest.importorskip("IPython")
    shell = _fake_shell()
    fig = plots.class_balance([1, 2, 3], ["a", "b", "c"])
    before, _ = shell.display_formatter.format(fig)
    assert "image/png" not in before
    assert plots.enable_notebook_display(shell)
    after, _ = shell.display_formatter.format(fig)
    width, height = (round(v) for v in fig.get_size_inches() * fig.dpi)
    assert after["text/plain"] == f"<Figure size {width}x{height} with 1 Axes>"
    assert base64.b64decode(after["image/png"]).startswith(b"\x89PNG")


def test_enable_notebook_display_keeps_an_existing_formatter():
    pytest.importorskip("IPython")
    shell = _fake_shell()
    png = shell.display_formatter.formatters["image/png"]
    png.for_type(Figure, lambda fig: "mine")
    assert plots.enable_notebook_display(shell)
    assert png.lookup_by_type(Figure)(Figure()) == "mine"


def test_enable_notebook_display_without_ipython_shell():
    # Outside IPython (plain pytest) there is nothing to configure.
    assert plots.enable_notebook_display() is False


def test_class_balance_has_one_bar_per_class_and_split():
    counts = data.class_counts(np.array([0, 0, 2, 9]))
    fig = plots.class_balance({"train": counts, "test": counts}, data.CLASS_NAMES)
    (ax,) = fig.axes
    assert len(ax.patches) == 2 * 10
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["train", "test"]
    # above the axes, so that it covers no bar (the truck bars were hidden once)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert legend.get_window_extent(renderer).y0 >= ax.get_window_extent(renderer).y1 - 1
    assert ax.get_legend() is None
    assert not plots.class_balance(counts, data.CLASS_NAMES).legends  # one split: no key


def test_gradient_norms_figure() -> None:
    fig = plots.gradient_norms({"a": [0.5, 2.0, 1.0], "b": [0.4, 0.3, 3.0]}, clip_norm=1.5,
                               title="norms")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "a" in labels and "b" in labels and "clip norm 1.5" in labels
    # One marker set per run for the steps above the threshold.
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [len(m.get_xdata()) for m in markers] == [1, 1]


@pytest.mark.parametrize("runs", [1, 3, 7])
def test_gradient_norm_keys_sit_above_the_panels(runs: int) -> None:
    rng = np.random.default_rng(0)
    norms = {f"head {i}": rng.random(300) * 10 + 0.1 for i in range(runs)}
    fig = plots.gradient_norms(norms, clip_norm=1.0, title="First epoch")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        key = ax.get_legend().get_window_extent(renderer)
        panel = ax.get_window_extent(renderer)
        assert key.y0 >= panel.y1 - 1
        assert not _overlaps(key, fig._suptitle.get_window_extent(renderer))
        assert key.y1 <= fig.bbox.y1 and key.x1 <= fig.bbox.x1 + 1


def test_gradient_norms_accepts_one_sequence_without_threshold() -> None:
    fig = plots.gradient_norms([1.0, 0.5, 0.25])
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["gradient norm"]


def test_temperature_curves_with_class_names_and_labels() -> None:
    z = np.array([1.0, 2.0, 3.0])
    fig = plots.temperature_curves(z, [2.0, 1.0], class_names=["a", "b", "c"],
                                   labels=["base e^0.5", "base e"])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base e^0.5", "base e"]
    default = plots.temperature_curves(z, [1 / np.log(10.0)]).axes[0]
    assert default.get_legend().get_texts()[0].get_text() == "T = 0.434"
    with pytest.raises(ValueError, match="labels"):
        plots.temperature_curves(z, [1.0, 2.0], labels=["one"])


def test_augmentation_grid_labels_its_rows(book_figures) -> None:
    fig = book_figures["augmentation (chapter 5)"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    image_axes = [ax for ax in fig.axes if ax.images]
    rows = sorted({round(ax.get_position().y0, 6) for ax in image_axes}, reverse=True)
    assert len(rows) == 3 and len(image_axes) == 24      # the rows stay as asked
    labels = {t.get_text(): t for ax in image_axes for t in ax.texts}
    assert list(labels) == ["original", "epoch 1", "epoch 2"]
    for (name, text), y0 in zip(labels.items(), rows):
        box = text.get_window_extent(renderer)
        row = [ax for ax in image_axes if round(ax.get_position().y0, 6) == y0]
        first = min(row, key=lambda ax: ax.get_position().x0).get_window_extent(renderer)
        assert box.x1 <= first.x0 and box.x0 >= 0, name      # left of the row, on the page
        assert first.y0 <= (box.y0 + box.y1) / 2 <= first.y1, name
    assert fig.get_figwidth() <= plots.PAGE_WIDTH + 1e-9
    with pytest.raises(ValueError, match="row labels"):
        plots.image_grid(np.zeros((24, 32, 32, 3)), [0] * 24, CLASS_NAMES, ncols=8,
                         row_labels=["original", "epoch 1"])
    with pytest.raises(ValueError, match="row labels"):  # 16 columns would be rewrapped
        plots.image_grid(np.zeros((32, 32, 32, 3)), [0] * 32, CLASS_NAMES, ncols=16,
                         row_labels=["original", "augmented"])


def test_colour_filters_share_one_symmetric_scale() -> None:
    filters = np.zeros((3, 2, 2, 3))
    filters[0] = 0.5                       # flat, equal in the three channels
    filters[1, :, :, 0] = -2.0             # the largest value: full red turned off
    filters[2, 0, 0, 2] = 1.0              # half the largest, in blue
    fig = plots.colour_filters(filters, ["a", "b", "c"], ncols=3)
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 3
    np.testing.assert_allclose(shown[0], 0.5 + 0.5 * 0.5 / 2.0)   # grey, not stretched
    np.testing.assert_allclose(shown[1][..., 0], 0.0)
    np.testing.assert_allclose(shown[1][..., 1:], 0.5)             # zero is mid-grey
    assert shown[2][0, 0, 2] == pytest.approx(0.75)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert "one scale" in fig.get_suptitle()
    with pytest.raises(ValueError, match="titles"):
        plots.colour_filters(filters, ["a"])
    with pytest.raises(ValueError, match="colour filters"):
        plots.colour_filters(filters[..., 0], ["a", "b", "c"])
