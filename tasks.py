#!/usr/bin/env python3
"""Set up, build and test the book with nothing but Python.

    python3 tasks.py book    # set up .venv, then build the HTML book into _build/html
    python3 tasks.py test    # set up .venv, then run every test (unit tests, notebooks, book)

Set-up creates the virtual environment ``.venv`` and installs the package with the
exact versions of ``constraints.txt`` (the ones the stored outputs were made with);
it runs again only when ``pyproject.toml`` or ``constraints.txt`` change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".cifar-tutorial-installed"


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the project root; stop with its exit code if it fails."""
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    """Create ``.venv`` and install the package and its book extras, pinned."""
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "constraints.txt").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"+ creating virtual environment {VENV.name}", flush=True)
        venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[book]")
    STAMP.write_text(digest)


def book() -> None:
    """Build the HTML book from the stored notebook outputs."""
    setup()
    run(PYTHON, "-c", "import sys; from tests.book_tools import build_book; "
        "sys.exit(build_book(echo=True).returncode)")
    print(f"\nThe book is in {(ROOT / '_build' / 'html' / 'index.html').relative_to(ROOT)}")


def test() -> None:
    """Run the unit tests, the notebooks in smoke mode (strict nbval) and the book tests."""
    setup()
    env = {**os.environ, "CIFAR_TUTORIAL_SMOKE": "1"}
    run(PYTHON, "-m", "pytest", "--nbval", "--nbval-cell-timeout=900",
        "--nbval-sanitize-with", "chapters/nbval-sanitize.cfg", "-p", "no:cacheprovider",
        *sys.argv[2:], env=env)


def main() -> None:
    """Dispatch ``book`` or ``test``."""
    tasks = {"book": book, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        print(__doc__)
        sys.exit(2)
    tasks[sys.argv[1]]()


if __name__ == "__main__":
    main()
