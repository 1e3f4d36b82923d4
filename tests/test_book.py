"""Build the Jupyter Book and check what a reader gets.

The book is built once per test session into a temporary folder, with Sphinx warnings
as errors. The checks then read the built HTML: every page of the table of contents is
there, no local link or asset is broken, nothing is fetched from the network, images
are real images, each notebook page offers its ``.ipynb`` for download, the API
reference documents every module, and, in headless Chromium, MathJax typesets every
formula.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from tools import book_tools

ROOT = book_tools.ROOT

pytest.importorskip("jupyter_book", reason="the book extra (jupyter-book) is not installed")

pytestmark = pytest.mark.slow  # one full build of the book: minutes on two cores

API_MODULES = [
    "cifar_tutorial.runtime",
    "cifar_tutorial.data",
    "cifar_tutorial.sources",
    "cifar_tutorial.plots",
    "cifar_tutorial.maths",
    "cifar_tutorial.learning",
    "cifar_tutorial.models",
    "cifar_tutorial.convolution",
    "cifar_tutorial.train",
    "cifar_tutorial.records",
    "cifar_tutorial.checkpoints",
    "cifar_tutorial.evaluate",
    "cifar_tutorial.predict",
    "cifar_tutorial.steps",
    "cifar_tutorial.experiments",
    "cifar_tutorial.recipes",
    "cifar_tutorial.fastnet",
    "cifar_tutorial.distribute",
    "cifar_tutorial.calibration",
    "cifar_tutorial.corruptions",
    "cifar_tutorial.saliency",
    "cifar_tutorial.trust_plots",
    "cifar_tutorial.export",
    "cifar_tutorial.errors",
    "cifar_tutorial.cli",
]


def toc_files() -> list[str]:
    """The documents named in ``_toc.yml`` (without suffix), root first."""
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    root = re.search(r"^root:\s*(\S+)", text, flags=re.M).group(1)
    files = re.findall(r"^\s*-?\s*file:\s*(\S+)", text, flags=re.M)
    return [root, *files]


def source_of(docname: str) -> Path:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{docname}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(docname)


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> book_tools.BuildResult:
    out = tmp_path_factory.mktemp("book")
    return book_tools.build_book(out, strict=True, full=True)


@pytest.fixture(scope="session")
def html_dir(book) -> Path:
    if not (book.html_dir / "index.html").is_file():
        pytest.fail("the book build wrote no HTML:\n" + book.log[-5000:])
    return book.html_dir


def test_book_builds_without_warnings(book):
    warnings = "\n".join(book.warnings())
    assert book.returncode == 0, (
        f"jupyter-book build failed (exit {book.returncode}) after {book.seconds:.0f} s.\n"
        f"Warnings and errors:\n{warnings or '(none found)'}\n"
        f"End of the log:\n{book.log[-3000:]}"
    )
    assert not book.warnings(), warnings


def test_every_toc_page_is_built(html_dir):
    missing = [doc for doc in toc_files() if not (html_dir / f"{doc}.html").is_file()]
    assert not missing, f"pages of _toc.yml without HTML: {missing}"
    assert (html_dir / "index.html").is_file()


def test_no_broken_local_links(html_dir):
    problems = book_tools.broken_links(html_dir, check_anchors=True)
    assert not problems, "broken links:\n" + "\n".join(problems[:50])


def test_pages_load_nothing_from_the_network(html_dir):
    problems = book_tools.remote_assets(html_dir)
    assert not problems, "remote assets:\n" + "\n".join(problems[:50])


def test_mathjax_is_bundled(html_dir):
    intro = (html_dir / "intro.html").read_text(encoding="utf-8")
    match = re.search(r'<script[^>]+src="([^"]*tex-chtml\.js)"', intro)
    assert match, "MathJax script tag not found in intro.html"
    assert not match.group(1).startswith(("http:", "https:", "//")), match.group(1)
    mathjax = html_dir / "_static" / "mathjax"
    assert (mathjax / "tex-chtml.js").is_file()
    fonts = list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert fonts, "MathJax's CHTML fonts were not copied"


def test_images_are_valid(html_dir):
    problems = book_tools.bad_images(html_dir)
    assert not problems, "bad images:\n" + "\n".join(problems[:50])


def test_notebooks_can_be_downloaded(html_dir):
    notebooks = [doc for doc in toc_files() if source_of(doc).suffix == ".ipynb"]
    assert notebooks, "no notebook in _toc.yml"
    for doc in notebooks:
        page = html_dir / f"{doc}.html"
        name = Path(doc).name + ".ipynb"
        links = [
            url
            for tag, attr, url in book_tools.parse_page(page).links
            if tag == "a" and url.split("#")[0].endswith("/" + name) and "_sources" in url
        ]
        assert links, f"{doc}.html has no .ipynb download link"
        target = (page.parent / links[0]).resolve()
        assert target.is_file(), f"{doc}.html: download link {links[0]} is broken"
        notebook = json.loads(target.read_text(encoding="utf-8"))
        assert notebook.get("nbformat") == 4 and "cells" in notebook, target


def test_api_reference_documents_every_module(html_dir):
    modules = sorted(f"cifar_tutorial.{p.stem}" for p in (ROOT / "cifar_tutorial").glob("*.py")
                     if not p.stem.startswith("_"))
    assert sorted(API_MODULES) == modules, (
        "a module is missing from the API page: give it a section in api.md, in the book's "
        "order, and add it to API_MODULES")
    api = (html_dir / "api.html").read_text(encoding="utf-8")
    missing = [mod for mod in API_MODULES if f'id="module-{mod}"' not in api]
    assert not missing, f"api.html does not document: {missing}"
    positions = [api.index(f'id="module-{mod}"') for mod in API_MODULES]
    assert positions == sorted(positions), "api.html lists the modules out of the book's order"


def test_api_reference_shows_only_the_public_api(html_dir):
    api = (html_dir / "api.html").read_text(encoding="utf-8")
    for internal in ("records.atomic_write_text", "records.atomic_save",
                     "sources.network_reachable", "sources.TFDS_HOST", "train._Checkpoint"):
        assert f'id="cifar_tutorial.{internal}"' not in api, internal
    for public in ("records.History", "evaluate.predict_logits", "recipes.FastHyperparameters",
                   "runtime.choose_precision", "fastnet.build_fast_net", "steps.make_train_step"):
        assert f'id="cifar_tutorial.{public}"' in api, public


def test_api_types_are_types(html_dir):
    # napoleon reads a constant's docstring up to its first ": " as the constant's type
    text = html.unescape(re.sub(r"<[^>]+>", "", (html_dir / "api.html").read_text(encoding="utf-8")))
    types = re.findall(r"^Type:\n+(.+)$", text, flags=re.M)
    assert types, "the API page shows no attribute types"
    prose = [t for t in types if len(t.split()) > 4]
    assert not prose, f"docstrings read as types (reword their first line): {prose}"


def test_bibliography_lists_every_entry(html_dir):
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,\s]+),", bib, flags=re.M)
    titles = [
        re.sub(r"[{}\\]", "", title)
        for title in re.findall(r"^\s*title\s*=\s*\{(.+)\},?\s*$", bib, flags=re.M)
    ]
    page = (html_dir / "references.html").read_text(encoding="utf-8")
    entries = page.count('role="doc-biblioentry"')
    assert keys and entries == len(keys), f"{len(keys)} entries in references.bib, {entries} listed"
    text = html.unescape(re.sub(r"<[^>]+>", "", page)).lower()
    missing = [title for title in titles if title[:30].lower() not in text]
    assert not missing, f"references.html lacks: {missing}"


def test_math_is_typeset_in_chromium(html_dir):
    chromium = book_tools.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    pages = book_tools.pages_with_math(html_dir)
    assert html_dir / "intro.html" in pages, "intro.html should contain math"
    problems = []
    for page in pages:
        report = book_tools.math_report(book_tools.rendered_dom(page, chromium=chromium))
        if report.math_elements == 0:
            problems.append(f"{page.relative_to(html_dir)}: no math element in the DOM")
        problems += [f"{page.relative_to(html_dir)}: {p}" for p in report.problems()]
    assert not problems, "\n".join(problems)


# The book is read in a 1280-px window. A browser with a visible scroll bar gives the
# text column SCROLL_BAR_PX less than headless Chromium, which hides it.
WINDOW_PX = 1280
SCROLL_BAR_PX = 17
FIGURE_DPI = 150  # cifar_tutorial.plots.DPI: figures are drawn at 150 dots per inch
CSS_PX_PER_INCH = 96


def test_pages_fit_a_1280_px_window(html_dir):
    """No code block, table or formula is wider than the column, and no figure is shrunk
    below its size in points."""
    chromium = book_tools.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    pages = [html_dir / f"{doc}.html" for doc in toc_files()]
    problems, columns = [], []
    for page in pages:
        layout = book_tools.page_layout(page, chromium=chromium, width=WINDOW_PX)
        name = page.relative_to(html_dir)
        columns.append(layout["column"])
        problems += [f"{name}: code block wider than the column: {first!r}"
                     for first in layout["wide_code"]]
        problems += [f"{name}: table wider than the column: {first!r}"
                     for first in layout["wide_tables"]]
        problems += [f"{name}: formula wider than the column: {first!r}"
                     for first in layout["wide_math"]]
        column = layout["column"] - SCROLL_BAR_PX
        for _, _shown, natural in layout["images"]:
            # shown at one CSS px per image px, shrunk to the column when wider
            points_per_point = min(natural, column) / natural * FIGURE_DPI / CSS_PX_PER_INCH
            if points_per_point < 1.0:
                problems.append(f"{name}: a {natural}-px figure shows at {min(natural, column)} "
                                f"px, {points_per_point:.2f} of its size in points")
    assert not problems, "\n".join(problems)
    # the stylesheet _static/page-width.css gives the column its width
    assert min(columns) >= 750, columns
