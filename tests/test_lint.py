"""The code passes ruff's checks (``[tool.ruff]`` in pyproject.toml): the package, the
benchmarks, the tools, the tests and the chapters' code cells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."],
                          cwd=ROOT, capture_output=True, text=True)
    assert "No module named ruff" not in done.stderr, (
        "ruff is not installed: python3 tasks.py test installs it with the book's extras")
    assert done.returncode == 0, done.stdout + done.stderr
