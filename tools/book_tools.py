"""Build the book and check the built HTML: shared by ``tasks.py book`` and the tests.

Only the standard library is used here (plus ``jupyter-book`` itself, run in a child
process, and Debian's ``chromium`` for the rendering checks), so that the helpers can be
imported from ``tasks.py`` before anything else is installed.

- :func:`build_book` runs ``jupyter-book build`` with warnings as errors.
- :func:`html_pages`, :func:`broken_links`, :func:`remote_assets`, :func:`bad_images`
  check the static HTML.
- :func:`find_chromium` and :func:`rendered_dom` load a page in headless Chromium and
  return the DOM after its scripts (MathJax) ran; :func:`math_report` reads it.
- :func:`page_layout` measures a page as laid out in a browser window: the text
  column, code blocks wider than their box, and how much each image is shrunk.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
"""The repository root, which is also the book's source folder (this file is in tools/)."""

BUILD_TIMEOUT_S = 900
CHROMIUM_TIMEOUT_S = 120

_BUILD_CMD = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"


@dataclass
class BuildResult:
    """What one ``jupyter-book build`` produced."""

    returncode: int
    html_dir: Path
    log: str
    seconds: float
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and (self.html_dir / "index.html").is_file()

    def warnings(self) -> list[str]:
        """The WARNING and ERROR lines of the build log, colour codes removed."""
        plain = re.sub(r"\x1b\[[0-9;]*m", "", self.log)
        return [
            line
            for line in plain.splitlines()
            if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b", line)
            # TensorFlow's C++ start-up notice (printed when autodoc imports the
            # package) is not a Sphinx warning.
            and "absl::InitializeLog" not in line
        ]


def build_book(
    output_dir: str | os.PathLike | None = None,
    *,
    strict: bool = True,
    full: bool = True,
    source_dir: str | os.PathLike = ROOT,
    echo: bool = False,
) -> BuildResult:
    """Build the HTML book with Jupyter Book.

    Parameters
    ----------
    output_dir
        Folder that receives ``_build/`` (``jupyter-book build --path-output``). The
        default is the source folder, so the pages land in ``_build/html``.
    strict
        Turn Sphinx warnings into errors (``--warningiserror --keep-going``): the build
        runs to the end, reports every warning and then fails.
    full
        Re-read every page (``--all``). An incremental build only reports the warnings
        of the pages it re-reads, so a strict check needs a full one.
    source_dir
        The book's source folder (holding ``_config.yml`` and ``_toc.yml``).
    echo
        Stream the build's output to this process's stdout while it runs.

    Returns
    -------
    BuildResult
        Exit status, the ``_build/html`` folder, the combined log and the duration.
    """
    source_dir = Path(source_dir).resolve()
    output_dir = Path(output_dir).resolve() if output_dir is not None else source_dir
    cmd = [sys.executable, "-c", _BUILD_CMD, "build", str(source_dir)]
    cmd += ["--path-output", str(output_dir)]
    if strict:
        cmd += ["--warningiserror", "--keep-going"]
    if full:
        cmd.append("--all")
    env = dict(os.environ)
    # TensorFlow is imported by autodoc: keep its C++ log lines out of the log.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=source_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    returncode = proc.wait(timeout=BUILD_TIMEOUT_S)
    return BuildResult(
        returncode=returncode,
        html_dir=output_dir / "_build" / "html",
        log="".join(lines),
        seconds=time.perf_counter() - start,
        command=cmd,
    )


# --------------------------------------------------------------------------------------
# Static checks of the built HTML


def html_pages(html_dir: Path) -> list[Path]:
    """Every HTML page of the build.

    Files under ``_sources`` (copies of the sources) and ``_static`` (theme assets,
    including unrendered Jinja templates) are not pages.
    """
    html_dir = Path(html_dir)
    return sorted(
        p
        for p in html_dir.rglob("*.html")
        if p.relative_to(html_dir).parts[0] not in ("_sources", "_static")
    )


class _PageParser(HTMLParser):
    """Collects links, element ids, images and scripts/stylesheets of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.assets: list[tuple[str, str]] = []  # (tag, url) loaded by the page

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            url = attrs.get(key)
            if url is not None:
                self.links.append((tag, key, url))
        if tag == "img" and attrs.get("src") is not None:
            self.images.append(attrs["src"])
        if tag == "script" and attrs.get("src"):
            self.assets.append((tag, attrs["src"]))
        if tag == "link" and attrs.get("href"):
            rel = (attrs.get("rel") or "").lower().split()
            if {"stylesheet", "preload", "icon", "modulepreload"} & set(rel):
                self.assets.append((tag, attrs["href"]))
        if tag in ("img", "iframe", "source", "video", "audio", "embed") and attrs.get(
            "src"
        ):
            self.assets.append((tag, attrs["src"]))

    handle_startendtag = handle_starttag


def parse_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme) or url.startswith("//")


def _local_target(page: Path, url: str) -> tuple[Path | None, str]:
    """The file a relative URL of ``page`` points to, and its fragment."""
    parts = urlsplit(url)
    fragment = unquote(parts.fragment)
    if not parts.path:
        return None, fragment  # same page
    target = (page.parent / unquote(parts.path)).resolve()
    if parts.path.endswith("/"):
        target = target / "index.html"
    return target, fragment


def broken_links(html_dir: Path, *, check_anchors: bool = True) -> list[str]:
    """Local ``href``/``src`` values of the built pages that point nowhere.

    Every URL without a scheme must name an existing file inside the build. For links
    to HTML pages of the build, a ``#fragment`` must also name an element id (or
    ``name``) of the target page when ``check_anchors`` is true.
    """
    html_dir = Path(html_dir).resolve()
    ids_cache: dict[Path, set[str]] = {}
    problems = []
    for page in html_pages(html_dir):
        parsed = parse_page(page)
        ids_cache.setdefault(page.resolve(), parsed.ids)
        for tag, attr, url in parsed.links:
            url = url.strip()
            if not url or url == "#" or _is_external(url):
                continue
            where = f"{page.relative_to(html_dir)}: <{tag} {attr}={url!r}>"
            target, fragment = _local_target(page, url)
            if target is None:
                target = page.resolve()
            else:
                try:
                    target.relative_to(html_dir)
                except ValueError:
                    problems.append(f"{where} leaves the build folder")
                    continue
                if not target.is_file():
                    problems.append(f"{where} -> missing file")
                    continue
            if check_anchors and fragment and tag == "a" and target.suffix == ".html":
                if target not in ids_cache:
                    ids_cache[target] = parse_page(target).ids
                if fragment not in ids_cache[target]:
                    problems.append(f"{where} -> no element with id {fragment!r}")
    return problems


def remote_assets(html_dir: Path) -> list[str]:
    """Scripts, stylesheets and media that a page would fetch from the network."""
    html_dir = Path(html_dir)
    problems = []
    for page in html_pages(html_dir):
        for tag, url in parse_page(page).assets:
            if _is_external(url) and not url.startswith("data:"):
                problems.append(f"{page.relative_to(html_dir)}: <{tag}> loads {url}")
    return problems


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, GIF or SVG image; None if not one of those."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            i += 2 + length
        return None
    head = data[:2048].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg")) and b"<svg" in data:
        match = re.search(rb"<svg\b[^>]*>", data, flags=re.S)
        if not match:
            return None
        tag = match.group(0)
        dims = []
        for name in (rb"width", rb"height"):
            m = re.search(rb"\b" + name + rb"\s*=\s*[\"']([0-9.]+)", tag)
            dims.append(float(m.group(1)) if m else None)
        if None in dims:
            box = re.search(rb"viewBox\s*=\s*[\"']([^\"']+)", tag)
            if not box:
                return None
            values = [float(v) for v in re.split(rb"[\s,]+", box.group(1).strip())]
            dims = values[2:4]
        return int(round(dims[0])), int(round(dims[1]))
    return None


def bad_images(html_dir: Path) -> list[str]:
    """``<img>`` elements whose source is missing, unreadable or has no size."""
    html_dir = Path(html_dir)
    problems = []
    for page in html_pages(html_dir):
        for src in parse_page(page).images:
            where = f"{page.relative_to(html_dir)}: <img src={src[:80]!r}>"
            if src.startswith("data:"):
                header, _, payload = src.partition(",")
                try:
                    if header.endswith(";base64"):
                        data = base64.b64decode(payload)
                    else:
                        data = unquote(payload).encode()
                except ValueError:
                    problems.append(f"{where}: undecodable data URI")
                    continue
            elif _is_external(src):
                problems.append(f"{where}: remote image")
                continue
            else:
                target, _ = _local_target(page, src)
                if target is None or not target.is_file():
                    problems.append(f"{where}: missing file")
                    continue
                data = target.read_bytes()
            size = image_size(data)
            if size is None:
                problems.append(f"{where}: not a PNG, JPEG, GIF or SVG image")
            elif min(size) <= 0:
                problems.append(f"{where}: empty image {size}")
    return problems


# --------------------------------------------------------------------------------------
# Rendering in headless Chromium

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None (``$CHROMIUM`` overrides the search)."""
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser"]
    candidates.append("/usr/bin/chromium")
    for name in candidates:
        if name:
            path = shutil.which(name)
            if path:
                return path
    return None


def _run_chromium(chromium: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="book-chromium-") as profile:
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def rendered_dom(
    page: Path, *, chromium: str | None = None, budget_ms: int = 15000
) -> str:
    """The DOM of ``page`` after its scripts ran (``chromium --dump-dom``).

    ``--virtual-time-budget`` lets the page's timers and deferred scripts (MathJax
    loads its fonts and extensions asynchronously) run before the DOM is printed.
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium executable found")
    proc = _run_chromium(
        chromium,
        [f"--virtual-time-budget={budget_ms}", "--dump-dom", Path(page).resolve().as_uri()],
        CHROMIUM_TIMEOUT_S,
    )
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(
            f"chromium failed on {page} (exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    return proc.stdout


def screenshot(
    page: Path,
    png: Path,
    *,
    chromium: str | None = None,
    size: tuple[int, int] = (1280, 1600),
    budget_ms: int = 15000,
) -> Path:
    """Save a PNG screenshot of ``page`` as rendered by headless Chromium."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium executable found")
    png = Path(png).resolve()
    proc = _run_chromium(
        chromium,
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
            Path(page).resolve().as_uri(),
        ],
        CHROMIUM_TIMEOUT_S,
    )
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium screenshot failed (exit {proc.returncode})")
    return png


_LAYOUT_SCRIPT = """<script>window.addEventListener("load", function () {
  var column = document.querySelector("article.bd-article");
  var style = getComputedStyle(column);
  var blocks = Array.from(document.querySelectorAll("div.highlight pre"));
  var right = column.getBoundingClientRect().right - parseFloat(style.paddingRight);
  function beyond(el) {  // wider than its box, or reaching past the column
    return el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > right + 1;
  }
  function start(el) { return el.textContent.replace(/\\s+/g, " ").trim().slice(0, 60); }
  var report = {
    column: column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
    wide_code: blocks.filter(function (pre) { return pre.scrollWidth > pre.clientWidth + 1; })
      .map(function (pre) { return pre.textContent.split("\\n")[0].slice(0, 60); }),
    wide_tables: Array.from(column.querySelectorAll("table")).filter(beyond).map(start),
    wide_math: Array.from(column.querySelectorAll("div.math, mjx-container[display=true]"))
      .filter(beyond).map(start),
    images: Array.from(document.querySelectorAll(".cell_output img")).map(function (img) {
      return [img.getAttribute("alt") || "", img.clientWidth, img.naturalWidth]; })
  };
  var out = document.createElement("pre");
  out.id = "page-layout-report";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});</script>"""


def page_layout(
    page: Path, *, chromium: str | None = None, width: int = 1280, budget_ms: int = 15000
) -> dict:
    """Lay ``page`` out in a ``width``-px window of headless Chromium and measure it.

    A copy of the page with a measuring script is written beside it (so that its
    styles and images load as the page's own), loaded without scroll bars, and removed.

    Returns
    -------
    dict
        ``column``: the text column's width in CSS px (inside the article's padding);
        ``wide_code``: the first line of every code block wider than its box (one that
        would scroll); ``wide_tables`` and ``wide_math``: the start of every table and
        displayed formula wider than its box or the column; ``images``: ``[alt, shown width, natural width]`` for every image
        in a cell output, in px.
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium executable found")
    page = Path(page)
    probe = page.with_name(f".layout-probe-{page.name}")
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", _LAYOUT_SCRIPT + "</body>", 1), encoding="utf-8")
    try:
        proc = _run_chromium(
            chromium,
            [f"--virtual-time-budget={budget_ms}", f"--window-size={width},1000", "--dump-dom",
             probe.resolve().as_uri()],
            CHROMIUM_TIMEOUT_S,
        )
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="page-layout-report"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"chromium could not lay out {page} (exit {proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return json.loads(unescape(found.group(1)))


class _MathParser(HTMLParser):
    """Counts math elements and MathJax output; keeps the prose text outside code."""

    SKIP = {"script", "style", "pre", "code", "textarea", "kbd", "samp", "mjx-container"}
    VOID = {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.math_elements = 0
        self.containers = 0
        self.errors = 0
        self.text: list[str] = []
        self._skip_stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "math" in classes:
            self.math_elements += 1
        if tag == "mjx-container":
            self.containers += 1
        if tag == "mjx-merror" or "data-mjx-error" in attrs:
            self.errors += 1
        if tag in self.VOID:
            return
        if self._skip_stack or tag in self.SKIP:
            self._skip_stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        before = len(self._skip_stack)
        self.handle_starttag(tag, attrs)
        del self._skip_stack[before:]

    def handle_endtag(self, tag):
        if self._skip_stack:
            # Pop up to the matching start tag (tolerates unclosed inner tags).
            if tag in self._skip_stack:
                while self._skip_stack:
                    if self._skip_stack.pop() == tag:
                        break

    def handle_data(self, data):
        if not self._skip_stack:
            self.text.append(data)


RAW_TEX = re.compile(
    r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$[^$\n]{0,200}?\\[A-Za-z]+[^$\n]{0,200}?\$"
)


@dataclass
class MathReport:
    math_elements: int
    containers: int
    errors: int
    raw_tex: list[str]

    def problems(self) -> list[str]:
        out = []
        if self.containers < self.math_elements:
            out.append(
                f"{self.math_elements} math elements but only {self.containers} "
                "typeset by MathJax (mjx-container)"
            )
        if self.errors:
            out.append(f"{self.errors} MathJax errors (mjx-merror)")
        for snippet in self.raw_tex[:5]:
            out.append(f"raw TeX left in the page: {snippet!r}")
        return out


def math_report(dom: str) -> MathReport:
    """Compare the math of a rendered DOM with what MathJax typeset."""
    parser = _MathParser()
    parser.feed(dom)
    parser.close()
    text = " ".join(parser.text)
    raw = [
        text[max(m.start() - 40, 0) : m.end() + 40].replace("\n", " ")
        for m in RAW_TEX.finditer(text)
    ]
    return MathReport(parser.math_elements, parser.containers, parser.errors, raw)


def pages_with_math(html_dir: Path) -> list[Path]:
    """Built pages whose static HTML contains math for MathJax to typeset."""
    found = []
    for page in html_pages(html_dir):
        text = page.read_text(encoding="utf-8", errors="replace")
        if re.search(r'class="[^"]*\bmath\b', text):
            found.append(page)
    return found
