"""Chapter 11's figures fit the page: width, font sizes, panels and ticks."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from cifar_tutorial import calibration, corruptions, maths, plots, trust_plots


def _smallest_font(fig: Figure) -> float:
    """Size in points of the smallest visible text of ``fig`` once laid out."""
    fig.draw_without_rendering()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert texts, "the figure shows no text"
    return min(t.get_fontsize() for t in texts)


def test_reliability_diagram_fits_the_page() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 10)) * 4.0
    labels = rng.integers(0, 10, size=2000)
    tables = {"before": calibration.reliability_table(maths.softmax(logits), labels),
              "after": calibration.reliability_table(maths.temperature_softmax(logits, 8.0),
                                                     labels)}
    fig = trust_plots.reliability_diagram(tables, ece={"before": 0.2, "after": 0.01})
    assert fig.get_figwidth() <= plots.PAGE_WIDTH
    assert len(fig.axes) == 4  # a reliability panel and a share panel per model
    assert _smallest_font(fig) >= 9
    assert "ECE 0.200" in fig.axes[0].get_title()
    assert "ECE" not in trust_plots.reliability_diagram(tables).axes[0].get_title()
    one = trust_plots.reliability_diagram({"one": tables["after"]})
    assert one.get_figwidth() <= plots.PAGE_WIDTH and len(one.axes) == 2
    with pytest.raises(ValueError, match="no reliability tables"):
        trust_plots.reliability_diagram({})


def test_corruption_curves_fit_the_page() -> None:
    curves = {model: {name: np.linspace(0.9, 0.2 + k / 20, 6)
                      for k, name in enumerate(corruptions.CORRUPTIONS)}
              for model in ("seed CNN", "fast recipe")}
    fig = trust_plots.corruption_curves(curves)
    assert fig.get_figwidth() <= plots.PAGE_WIDTH
    assert len(fig.axes) == len(corruptions.CORRUPTIONS)
    assert len(fig.axes[0].lines) == 2
    assert _smallest_font(fig) >= 9
    ticks = fig.axes[3].get_xticks()
    np.testing.assert_array_equal(ticks, np.round(ticks))
    with pytest.raises(ValueError, match="need 1 to"):
        trust_plots.corruption_curves({})
    too_many = {f"model {i}": curves["seed CNN"] for i in range(plots.MAX_LEGEND + 1)}
    with pytest.raises(ValueError, match="need 1 to"):
        trust_plots.corruption_curves(too_many)


def test_saliency_grid_fits_the_page() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3)).astype(np.uint8)
    maps = rng.random((6, 32, 32))
    fig = trust_plots.saliency_grid(images, {"gradient": maps, "Grad-CAM": maps},
                                    titles=["cat→dog 0.91"] * 6)
    assert fig.get_figwidth() <= plots.PAGE_WIDTH
    assert len(fig.axes) == 18  # the images and two rows of maps
    assert _smallest_font(fig) >= 9
    assert [fig.axes[6 * r].get_ylabel() for r in range(3)] == ["image", "gradient", "Grad-CAM"]
    with pytest.raises(ValueError, match="images"):
        trust_plots.saliency_grid(np.concatenate([images, images]),
                                  {"g": np.concatenate([maps, maps])})
