"""Every figure in a chapter's prose comes from that chapter's stored outputs or code,
or from a named source (issue: "every number bound to an output").

A percentage (``61.4%``) or a decimal number (``0.6137``) in a chapter's Markdown must
match, at the precision the prose gives it, a number printed by one of that chapter's
stored outputs or written in its code (a percentage also matches a fraction that
rounds to it: ``61.4%`` matches ``0.6137``). Numbers inside math (``$...$``), inline
code and link targets are arithmetic or code the reader can check on the spot, and
version numbers (``Keras 3.15``) are not figures. Anything else is listed in
``chapters/quoted-figures.json`` with its source: a paper, the seed article, or a
file in ``bench/results/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))
QUOTED = ROOT / "chapters" / "quoted-figures.json"
#: The book's Markdown pages with figures: their tables stand for a chapter's outputs
#: (bench/report.py prints the benchmarks page's, tests/test_bench_report.py checks them).
PAGES = {"intro": ROOT / "intro.md", "benchmarks": ROOT / "chapters" / "benchmarks.md"}

# a release such as 0.1.8 is no figure: the negative lookahead skips it
FIGURE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![.\d]*\.\d)"
                    r"(?:[eE]([-+]?\d+))?(\s*%)?")
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?:[eE]([-+]?\d+))?")
NOT_FIGURES = [
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\$[^$\n]+\$"),  # inline math
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"\b(?:Keras|TensorFlow|Python|TFDS|NumPy|version|v)\s*\d+(?:\.\d+)+"),
]


def prose_figures(markdown: str) -> list[tuple[str, float, int, int, bool]]:
    """``(text, mantissa, decimals, exponent, is_percentage)`` of each figure in ``markdown``.

    ``2.4e-07`` is the mantissa 2.4 with one decimal and the exponent -7.
    """
    for pattern in NOT_FIGURES:
        markdown = pattern.sub(" ", markdown)
    found = []
    for m in FIGURE.finditer(markdown):
        whole, decimals, exponent, percent = m.groups()
        if decimals is None and exponent is None and not percent:
            continue  # a whole number: counts, epochs, years
        mantissa = float(whole.replace(",", "") + "." + (decimals or "0"))
        found.append((m.group(0).strip(), mantissa, len(decimals or ""), int(exponent or 0),
                      bool(percent)))
    return found


def stored_numbers(cells: list[dict]) -> list[float]:
    """Every number in the code and the stored text outputs of ``cells``."""
    texts = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        texts.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            parts = [output.get("text", "")] + [
                value for key, value in output.get("data", {}).items() if key.startswith("text/")]
            texts += ["".join(p) if isinstance(p, list) else p for p in parts]
    numbers = []
    for m in NUMBER.finditer("\n".join(texts)):
        whole, decimals, exponent = m.group(1).replace(",", ""), m.group(2), m.group(3)
        numbers.append(float(f"{whole}.{decimals or 0}e{exponent or 0}"))
    return numbers


def matches(value: float, decimals: int, percent: bool, numbers: list[float],
            exponent: int = 0) -> bool:
    """Whether a number of ``numbers`` shows as ``value`` at the prose's precision.

    A percentage also matches the fraction that rounds to it; a figure written with an
    exponent is compared in that power of ten.
    """
    scales = (1.0, 100.0) if percent else (1.0,)
    return any(round(n * s / 10.0 ** exponent, decimals) == round(value, decimals)
               for n in numbers for s in scales)


def test_quoted_figures_name_their_sources() -> None:
    quoted = json.loads(QUOTED.read_text(encoding="utf-8"))
    names = {p.stem for p in NOTEBOOKS} | set(PAGES)
    for chapter, figures in quoted.items():
        assert chapter in names, f"{QUOTED.name}: no chapter {chapter}"
        for figure, source in figures.items():
            assert FIGURE.fullmatch(figure), f"{chapter}: {figure!r} is not a figure"
            assert len(source) >= 10, f"{chapter}: {figure} needs its source, not {source!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_in_the_prose_is_an_output_or_quoted(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    numbers = stored_numbers(cells)
    quoted = json.loads(QUOTED.read_text(encoding="utf-8")).get(path.stem, {})
    problems = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for text, value, decimals, exponent, percent in prose_figures("".join(cell["source"])):
            if text not in quoted and not matches(value, decimals, percent, numbers, exponent):
                problems.append(f"cell {index}: {text}")
    assert not problems, (
        f"{path.name}: figures in the prose that no stored output or code of the chapter "
        f"shows; print them, or list them in {QUOTED.name} with their source:\n  "
        + "\n  ".join(problems))


def table_lines(markdown: str) -> tuple[str, str]:
    """``markdown`` split into its Markdown tables' lines and everything else."""
    tables, prose = [], []
    for line in markdown.splitlines():
        (tables if line.lstrip().startswith("|") else prose).append(line)
    return "\n".join(tables), "\n".join(prose)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_figure_on_a_page_is_in_its_tables_or_quoted(name: str) -> None:
    tables, prose = table_lines(PAGES[name].read_text(encoding="utf-8"))
    numbers = stored_numbers([{"cell_type": "code", "source": [tables]}])
    quoted = json.loads(QUOTED.read_text(encoding="utf-8")).get(name, {})
    problems = [text for text, value, decimals, exponent, percent in prose_figures(prose)
                if text not in quoted and not matches(value, decimals, percent, numbers, exponent)]
    assert not problems, (
        f"{PAGES[name].name}: figures in the prose that none of the page's tables shows; "
        f"list them in {QUOTED.name} under {name!r} with their source:\n  "
        + "\n  ".join(problems))


def test_the_check_finds_what_it_should() -> None:
    figures = prose_figures("We reach 61.4% ($e^{-8} = 0.0003$), `lr=0.01`, Keras 3.15, "
                            "airbench 0.1.8, 7 epochs, a gap of 2.4e-07.\n```python\n"
                            "lr = 0.5\n```")
    assert [f[0] for f in figures] == ["61.4%", "2.4e-07"]
    assert figures[1][1:4] == (2.4, 1, -7)
    assert matches(2.4, 1, False, [2.38e-7], exponent=-7)
    assert not matches(2.4, 1, False, [2.38e-6], exponent=-7)
    assert matches(61.4, 1, True, [0.6137]) and not matches(61.4, 1, True, [0.6149])
    assert matches(0.25, 2, False, [0.2512]) and not matches(0.25, 2, False, [2.5])
