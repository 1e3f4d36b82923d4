#!/usr/bin/env python3
"""Set up, build and test the book with nothing but Python.

    python3 tasks.py book    # set up .venv, then build the HTML book into _build/html
    python3 tasks.py test    # set up .venv, then run every test (unit tests, notebooks, book)
    python3 tasks.py lab     # set up .venv, then open the chapters in JupyterLab
    python3 tasks.py lab --quick            # ... with every chapter in quick mode
    python3 tasks.py lab --no-browser --port 8899   # other arguments go to JupyterLab

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
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".cifar-tutorial-installed"
CHAPTERS = ROOT / "chapters"
DATA_ENV = "CIFAR10_DIR"  # the image folder the notebooks read (cifar_tutorial.data)
QUICK_ENV = "CIFAR_TUTORIAL_QUICK"  # a reader's quick mode (cifar_tutorial.runtime)


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
    # setuptools boxes its notice that an editable install is one; nothing to act on
    filters = [os.environ.get("PYTHONWARNINGS"), "ignore:Editable installation:UserWarning"]
    quiet = {**os.environ, "PYTHONWARNINGS": ",".join(f for f in filters if f)}
    run(PYTHON, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", ".[book]",
        env=quiet)
    STAMP.write_text(digest)


def book() -> None:
    """Build the HTML book from the stored notebook outputs."""
    setup()
    run(PYTHON, "-c", "import sys; from tools.book_tools import build_book; "
        "sys.exit(build_book(echo=True).returncode)")
    print(f"\nThe book is in {(ROOT / '_build' / 'html' / 'index.html').relative_to(ROOT)}")


def test() -> None:
    """Run the unit tests, the notebooks in smoke mode (strict nbval) and the book tests."""
    setup()
    env = {**os.environ, "CIFAR_TUTORIAL_SMOKE": "1"}
    run(PYTHON, "-m", "pytest", "--nbval", "--nbval-cell-timeout=900",
        "--nbval-sanitize-with", "chapters/nbval-sanitize.cfg", "-p", "no:cacheprovider",
        *sys.argv[2:], env=env)


def lab_command(
    args: Sequence[str] = (),
    *,
    quick: bool = False,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start JupyterLab on ``chapters/``.

    The server runs on the venv's Python, so the kernel it offers ("python3") is
    that Python and imports ``cifar_tutorial``; kernels inherit the environment.
    A relative ``CIFAR10_DIR`` is made absolute (kernels run in ``chapters/``, not
    where the reader typed it); ``quick`` sets ``CIFAR_TUTORIAL_QUICK=1``. As root
    (containers) ``--allow-root`` is added. ``args`` follow, so they win.

    Parameters
    ----------
    args : sequence of str
        Arguments for JupyterLab, such as ``--no-browser`` or ``--port 8899``.
    quick : bool
        Run every chapter in the reader's quick mode.
    environ : mapping, optional
        The environment to start from; ``os.environ`` when not given.
    cwd : Path, optional
        The folder a relative ``CIFAR10_DIR`` is relative to; the current one.

    Returns
    -------
    tuple of (list of str, dict)
        The command and the environment to run it with.
    """
    env = dict(os.environ if environ is None else environ)
    data_dir = env.get(DATA_ENV, "").strip()
    if data_dir:
        base = Path.cwd() if cwd is None else cwd
        env[DATA_ENV] = str((base / Path(data_dir).expanduser()).resolve())
    if quick:
        env[QUICK_ENV] = "1"
    env["JUPYTER_PREFER_ENV_PATH"] = "1"  # the venv's kernel before any user-wide one
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # no TensorFlow start-up notices
    command = [str(PYTHON), "-m", "jupyterlab", f"--ServerApp.root_dir={CHAPTERS}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        command.append("--allow-root")
    return command + list(args), env


def lab() -> None:
    """Start JupyterLab on the chapters (``--quick``: the reader's quick mode)."""
    args = [a for a in sys.argv[2:] if a != "--quick"]
    command, env = lab_command(args, quick="--quick" in sys.argv[2:])
    data_dir = env.get(DATA_ENV)
    if data_dir and not Path(data_dir).is_dir():
        print(f"error: {DATA_ENV}={data_dir} is not a folder: point it at the CIFAR-10 "
              "image folder (train/<class>/*.jpg) or unset it", file=sys.stderr)
        sys.exit(2)
    setup()
    if data_dir:
        print(f"The notebooks read CIFAR-10 from {DATA_ENV}={data_dir}")
    else:
        print(f"{DATA_ENV} is not set: the notebooks download TensorFlow Datasets' "
              "cifar10 once (about 160 MB).")
    if env.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes"}:
        print(f"Quick mode ({QUICK_ENV}=1): each chapter trains on a subset for "
              "fewer epochs.")
    shown = [str(Path(command[0]).relative_to(ROOT)), *command[1:]]
    print("+", " ".join(shown), flush=True)
    if os.name == "posix":  # JupyterLab replaces this process and gets Ctrl-C itself
        os.execve(command[0], command, env)
    run(*command, env=env)


def main() -> None:
    """Dispatch ``book``, ``test`` or ``lab``."""
    tasks = {"book": book, "test": test, "lab": lab}
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        print(__doc__)
        sys.exit(2)
    tasks[sys.argv[1]]()


if __name__ == "__main__":
    main()
