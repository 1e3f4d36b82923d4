"""Page checks over the stored notebooks in ``chapters/``: what a reader sees.

The book shows each notebook's stored outputs in a 1280-px browser window, whose text
column holds about 85 characters of code (``tests/test_book.py`` measures it in
Chromium). These tests read the notebooks as they are
committed (nothing is executed) and check, per chapter:

* no code line, no visible text output line and no line of code in the prose is
  wider than :data:`MAX_WIDTH`;
* no cell shows more than :data:`MAX_STREAM_LINES` lines of printed output (a log
  that long goes into a cell tagged ``hide-output``, or becomes a summary);
* no output mentions the tests' smoke mode;
* the first code cell starts with the import guard and prints
  ``runtime.describe_run(N)`` as a full run prints it;
* every code cell was executed, in order.

"Visible" means what Jupyter Book puts on the page without a click: the outputs of
cells tagged ``hide-output``, ``remove-output``, ``hide-cell`` or ``remove-cell`` are
left out, and so is the code of cells tagged ``remove-input`` or ``remove-cell``. The
text of an output is its stream text (after carriage returns and backspaces have done
their work and colour codes are removed), an error's traceback, and ``text/plain``
where the page shows it, that is when the output has no HTML, image, Markdown or LaTeX
form (HTML tables scroll by themselves and are not measured).

Each failure lists the notebook, the cell index (as ``nbformat`` counts, from 0) and
the offending line, so that a chapter's author can fix it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))

MAX_WIDTH = 80
"""Characters of code or output that fit the text column without a scroll bar."""

MAX_STREAM_LINES = 15
"""Lines of printed output a cell may show: a table of ten classes with its header and
a summary fits, an epoch-by-epoch log of twenty epochs does not."""

MAX_CODE_LINES = 25
"""Lines of code a cell the reader sees may hold (the setup cell and collapsed cells aside):
one idea, read at a glance; a model or a training step of the reader's own fits."""

COLLAPSED_INPUT_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell"}

HIDDEN_OUTPUT_TAGS = {"hide-output", "remove-output", "hide-cell", "remove-cell"}
HIDDEN_INPUT_TAGS = {"remove-input", "remove-cell"}
RICHER_THAN_TEXT = {"text/html", "image/png", "image/jpeg", "image/svg+xml",
                    "text/markdown", "text/latex", "application/javascript"}
SMOKE = re.compile(r"smoke[ _-]?mode", re.IGNORECASE)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def joined(text: str | list[str]) -> str:
    return "".join(text) if isinstance(text, list) else text


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def as_shown(text: str) -> list[str]:
    """The lines a terminal (and Jupyter) shows for ``text``: ``\\r`` returns to the
    start of the line, ``\\b`` deletes a character, colour codes take no room."""
    lines = []
    for raw in ANSI.sub("", text).split("\n"):
        kept: list[str] = []
        for char in raw.rstrip("\r").rsplit("\r", 1)[-1]:
            if char != "\b":
                kept.append(char)
            elif kept:
                kept.pop()
        lines.append("".join(kept))
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def output_lines(output: dict) -> list[str]:
    """The text lines of one output as the page shows them (empty: nothing as text)."""
    kind = output["output_type"]
    if kind == "stream":
        return as_shown(joined(output["text"]))
    if kind == "error":
        return [line for tb in output.get("traceback", []) for line in as_shown(tb)]
    data = output.get("data", {})
    if "text/plain" in data and not RICHER_THAN_TEXT & set(data):
        return as_shown(joined(data["text/plain"]))
    return []


def all_text(output: dict) -> str:
    """Every text an output carries, shown or not (for the smoke-mode check)."""
    parts = [joined(output.get("text", "")), *output.get("traceback", [])]
    parts += [joined(v) for k, v in output.get("data", {}).items()
              if k.startswith("text/") and isinstance(v, (str, list))]
    return "\n".join(parts)


def code_cells(cells: list[dict]) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def report(path: Path, problems: list[str], what: str) -> str:
    head = f"{path.relative_to(ROOT)}: {len(problems)} {what}"
    return "\n  ".join([head, *problems[:40]] + (["..."] if len(problems) > 40 else []))


def show(line: str) -> str:
    return repr(line if len(line) <= 120 else line[:117] + "...")


def guard_problem(source: str) -> str | None:
    """Why ``source`` does not start with the import guard (None when it does)."""
    try:
        first = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return "does not parse as Python"
    ok = (
        isinstance(first, ast.Try)
        and len(first.body) == 1
        and isinstance(imp := first.body[0], ast.Import)
        and [(a.name, a.asname) for a in imp.names] == [("cifar_tutorial", None)]
        and len(first.handlers) == 1
        and isinstance(first.handlers[0].type, ast.Name)
        and first.handlers[0].type.id == "ModuleNotFoundError"
    )
    if not ok:
        return ("does not start with 'try: import cifar_tutorial' / "
                "'except ModuleNotFoundError:'")
    raise_ = first.handlers[0].body[0]
    if not (isinstance(raise_, ast.Raise) and isinstance(raise_.exc, ast.Call)
            and isinstance(raise_.exc.func, ast.Name)
            and raise_.exc.func.id == "ModuleNotFoundError"
            and isinstance(raise_.cause, ast.Constant) and raise_.cause.value is None):
        return "the except branch must 'raise ModuleNotFoundError(...) from None'"
    message = "".join(a.value for a in raise_.exc.args
                      if isinstance(a, ast.Constant) and isinstance(a.value, str))
    missing = [s for s in ("python3 tasks.py lab", 'pip install -e ".[book]"')
               if s not in message]
    if missing:
        return f"the guard's message must name {' and '.join(map(repr, missing))}"
    return None


def full_run_text(minutes: float, machine: str | None, monkeypatch: pytest.MonkeyPatch) -> str:
    """What ``runtime.describe_run(minutes, machine)`` prints in a full run, up to the
    estimate for the machine that ran the cell."""
    from cifar_tutorial import runtime  # here: the other checks need no TensorFlow

    with monkeypatch.context() as patch:
        patch.delenv(runtime.SMOKE_ENV, raising=False)
        patch.delenv(runtime.QUICK_ENV, raising=False)
        patch.setattr(runtime, "speed_probe", lambda: 1.0)
        args = (minutes,) if machine is None else (minutes, machine)
        head = ";\non this machine"  # what follows depends on the machine that ran the cell
        return runtime.describe_run(*args).split(head)[0] + head


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 8, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_and_output_lines_fit_the_page(path: Path):
    problems = []
    for index, cell in code_cells(load(path)):
        if not tags(cell) & HIDDEN_INPUT_TAGS:
            for number, line in enumerate(joined(cell["source"]).splitlines(), 1):
                if len(line) > MAX_WIDTH:
                    problems.append(f"cell {index}, code line {number} "
                                    f"({len(line)} chars): {show(line)}")
        if tags(cell) & HIDDEN_OUTPUT_TAGS:
            continue
        for output in cell.get("outputs", []):
            for line in output_lines(output):
                if len(line) > MAX_WIDTH:
                    problems.append(f"cell {index}, {output['output_type']} output "
                                    f"({len(line)} chars): {show(line)}")
    assert not problems, report(path, problems, f"lines wider than {MAX_WIDTH} characters")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_in_the_prose_fits_the_page(path: Path):
    problems = []
    for index, cell in enumerate(load(path)):
        if cell["cell_type"] != "markdown":
            continue
        fenced = False
        for line in joined(cell["source"]).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif fenced and len(line) > MAX_WIDTH:
                problems.append(f"cell {index}, fenced code ({len(line)} chars): {show(line)}")
    assert not problems, report(path, problems, f"lines wider than {MAX_WIDTH} characters")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_shows_a_long_log(path: Path):
    problems = []
    for index, cell in code_cells(load(path)):
        if tags(cell) & HIDDEN_OUTPUT_TAGS:
            continue
        lines = [line for output in cell.get("outputs", [])
                 if output["output_type"] == "stream" for line in output_lines(output)]
        if len(lines) > MAX_STREAM_LINES:
            problems.append(f"cell {index} prints {len(lines)} lines, starting "
                            f"{show(lines[0])} and ending {show(lines[-1])}: summarize, "
                            "or tag the cell hide-output")
    assert not problems, report(
        path, problems, f"cells showing more than {MAX_STREAM_LINES} lines of output")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_the_reader_sees_are_short(path: Path):
    problems = [
        f"cell {index} has {n} lines of code, starting "
        f"{show(joined(cell['source']).splitlines()[0])}"
        for index, cell in code_cells(load(path))[1:]  # the setup cell has its own rules
        if not tags(cell) & COLLAPSED_INPUT_TAGS
        and (n := len(joined(cell["source"]).splitlines())) > MAX_CODE_LINES
    ]
    assert not problems, report(path, problems, f"code cells over {MAX_CODE_LINES} lines "
                                "(split them where the idea splits, or collapse them)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_output_mentions_the_smoke_mode(path: Path):
    problems = [
        f"cell {index}: {show(line)}"
        for index, cell in code_cells(load(path))
        for output in cell.get("outputs", [])
        for line in all_text(output).splitlines()
        if SMOKE.search(line)
    ]
    assert not problems, report(path, problems, "output lines about the smoke mode "
                                "(print runtime.describe_run(N) instead)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_guards_the_import_and_describes_the_run(path, monkeypatch):
    cells = code_cells(load(path))
    assert cells, f"{path.name} has no code cell"
    index, cell = cells[0]
    source = joined(cell["source"])
    problems = []
    if (why := guard_problem(source)) is not None:
        problems.append(f"cell {index}: the import guard of CONTRIBUTING.md: {why}")
    call = re.search(r"runtime\.describe_run\(\s*([0-9]+(?:\.[0-9]+)?)\s*"
                     r"(?:,\s*\"([\w-]+)\"\s*)?\)", source)
    if call is None:
        problems.append(f"cell {index}: no print(runtime.describe_run(N)), with N the "
                        "full run's minutes as a number")
    else:
        expected = full_run_text(float(call.group(1)), call.group(2), monkeypatch)
        stdout = "".join(joined(o["text"]) for o in cell.get("outputs", [])
                         if o["output_type"] == "stream" and o["name"] == "stdout")
        if expected not in stdout:
            problems.append(f"cell {index}: the stored output lacks the full run's "
                            f"{expected!r} (re-run the chapter in full)")
    assert not problems, report(path, problems, "problems with the setup cell")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_was_executed_in_order(path: Path):
    problems, last = [], 0
    for index, cell in code_cells(load(path)):
        if not joined(cell["source"]).strip():
            continue
        count = cell.get("execution_count")
        if count is None:
            problems.append(f"cell {index} was not executed")
        elif count <= last:
            problems.append(f"cell {index} ran as [{count}] after [{last}]: "
                            "re-run the whole notebook from the top")
        last = count if count is not None else last
    assert not problems, report(path, problems, "cells without a fresh stored run")
