"""``python3 tasks.py lab``: the command it builds, and the server it starts.

The slow test starts JupyterLab through :func:`tasks.lab_command` (the code path of
``tasks.py lab``) on a free loopback port with a token of its own, starts a kernel
through the server's REST API, runs the first cells of chapter 1 over the server's
websocket, as the browser would, compares their outputs with the stored ones, and
shuts the server down. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

import tasks

CHAPTER = tasks.CHAPTERS / "01_classification.ipynb"


def test_lab_command_runs_jupyterlab_of_the_venv_on_the_chapters(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    command, env = tasks.lab_command(["--no-browser", "--port", "8899"], environ={})
    assert command[:3] == [str(tasks.PYTHON), "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={tasks.CHAPTERS}" in command
    assert command[-3:] == ["--no-browser", "--port", "8899"]  # passed through, last
    assert "--allow-root" not in command
    assert tasks.QUICK_ENV not in env and tasks.DATA_ENV not in env
    assert env["JUPYTER_PREFER_ENV_PATH"] == "1"


def test_lab_command_allows_root_once(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    command, _ = tasks.lab_command([], environ={})
    assert command.count("--allow-root") == 1
    command, _ = tasks.lab_command(["--allow-root"], environ={})
    assert command.count("--allow-root") == 1


def test_lab_command_quick_mode_and_an_absolute_data_folder(tmp_path):
    environ = {tasks.DATA_ENV: "data/cifar", "KEEP": "me"}
    _, env = tasks.lab_command([], quick=True, environ=environ, cwd=tmp_path)
    assert env[tasks.QUICK_ENV] == "1"
    assert env[tasks.DATA_ENV] == str((tmp_path / "data" / "cifar").resolve())
    assert env["KEEP"] == "me"
    assert environ[tasks.DATA_ENV] == "data/cifar"  # the caller's mapping is untouched


def test_lab_stops_on_a_data_folder_that_does_not_exist(tmp_path):
    env = {**os.environ, tasks.DATA_ENV: str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, str(tasks.ROOT / "tasks.py"), "lab"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "nowhere is not a folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- the server itself ---------------------------------------------------------------

SERVER_START_S = 90  # JupyterLab up and answering its REST API
CELL_S = 240  # one cell (the setup cell imports TensorFlow, slow on 2 busy cores)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """Talk to a Jupyter server's REST API with a token."""

    def __init__(self, port: int, token: str, process: subprocess.Popen, log: Path):
        self.port, self.token, self.process, self.log = port, token, process, log

    def request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read().decode()
            kind = answer.headers.get("Content-Type", "")
            return json.loads(text) if text and "json" in kind else text

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_until_up(self) -> dict:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.process.returncode}:\n"
                            + self.log_tail())
            try:
                return self.request("GET", "/api/status")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n"
                    + self.log_tail())


def message(session: str, msg_type: str, content: dict) -> dict:
    """A Jupyter protocol message for the server's (JSON) websocket."""
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
                   "username": "test", "version": "5.3",
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "parent_header": {}, "metadata": {}, "content": content, "buffers": [],
        "channel": "shell",
    }


async def run_cells(server: Server, kernel_id: str, sources: list[str]) -> list[dict]:
    """Execute ``sources`` one after the other on the kernel, through the server.

    Returns, per cell, the reply status and the outputs as nbformat dictionaries.
    """
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    session = uuid.uuid4().hex
    url = (f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
           f"?session_id={session}")
    request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
    connection = await asyncio.wait_for(websocket_connect(request), 30)
    results = []
    try:
        for source in sources:
            sent = message(session, "execute_request", {
                "code": source, "silent": False, "store_history": True,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
            await connection.write_message(json.dumps(sent))
            outputs, status, idle = [], None, False
            while status is None or not idle:
                raw = await asyncio.wait_for(connection.read_message(), CELL_S)
                assert raw is not None, "the server closed the kernel's websocket"
                msg = json.loads(raw)
                if msg["parent_header"].get("msg_id") != sent["header"]["msg_id"]:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "execute_reply":
                    status = content["status"]
                elif kind == "status":
                    idle = content["execution_state"] == "idle"
                elif kind == "stream":
                    outputs.append({"output_type": "stream", "name": content["name"],
                                    "text": content["text"]})
                elif kind in {"execute_result", "display_data"}:
                    outputs.append({"output_type": kind, "data": content["data"]})
                elif kind == "error":
                    outputs.append({"output_type": "error", "ename": content["ename"],
                                    "evalue": content["evalue"]})
            results.append({"status": status, "outputs": outputs})
    finally:
        connection.close()
    return results


def compared_text(outputs: list[dict]) -> list[tuple[str, str]]:
    """What nbval compares of a cell's outputs: stream text and text/plain, merged."""
    merged: list[tuple[str, str]] = []
    for out in outputs:
        if out["output_type"] == "stream":
            if merged and merged[-1][0] == out["name"]:
                merged[-1] = (out["name"], merged[-1][1] + out["text"])
            else:
                merged.append((out["name"], out["text"]))
        elif "text/plain" in out.get("data", {}):
            merged.append((out["output_type"], out["data"]["text/plain"]))
    return merged


def first_cells(path: Path) -> list:
    """The code cells of a chapter before it first reads CIFAR-10 (no data needed)."""
    cells = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        if "load_cifar10(" in cell.source or "CIFAR10_DIR" in cell.source:
            break
        cells.append(cell)
    return cells


def process_gone(pid: int, within_s: float) -> bool:
    """Wait until process ``pid`` has ended (a zombie counts as ended)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_lab_serves_a_kernel_that_runs_the_first_cells_of_chapter_1(tmp_path):
    has_lab = tasks.PYTHON.exists() and subprocess.run(
        [str(tasks.PYTHON), "-c", "import jupyterlab"]).returncode == 0
    if not has_lab:
        pytest.skip("JupyterLab is not installed in .venv: run python3 tasks.py lab once")
    cells = first_cells(CHAPTER)
    compared = [c for c in cells if "nbval-ignore-output" not in c.metadata.get("tags", [])
                and c.outputs]
    assert cells and compared, (
        f"{CHAPTER.name} has no code cell with compared outputs before it loads CIFAR-10")

    (tmp_path / "data").mkdir()
    port, token = free_port(), secrets.token_hex(16)
    environ = {k: v for k, v in os.environ.items()
               if k not in {"CIFAR_TUTORIAL_SMOKE", "MPLBACKEND", "TF_CPP_MIN_LOG_LEVEL"}}
    environ.update({
        tasks.DATA_ENV: "data",  # relative to cwd below: the kernel must see it absolute
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    })
    command, env = tasks.lab_command(
        ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"],
        quick=True, environ=environ, cwd=tmp_path,
    )
    log = tmp_path / "lab.log"
    started = time.monotonic()
    with log.open("w") as log_file:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(port, token, process, log)
    kernel_pid = None
    try:
        server.wait_until_up()
        up_s = time.monotonic() - started
        assert "JupyterLab" in server.request("GET", "/lab")  # the Lab page, not only a server
        specs = server.request("GET", "/api/kernelspecs")
        assert specs["default"] == "python3", specs["kernelspecs"].keys()

        kernel = server.request("POST", "/api/kernels", {"name": "python3", "path": ""})
        assert kernel["name"] == "python3"
        t0 = time.monotonic()
        probe, *chapter = asyncio.run(run_cells(server, kernel["id"], [
            "import json, os, sys\n"
            "from cifar_tutorial import runtime\n"
            "print(json.dumps({'prefix': sys.prefix, 'cwd': os.getcwd(), 'pid': os.getpid(),"
            " 'data': os.environ.get('CIFAR10_DIR'), 'mode': runtime.run_mode()}))",
            *[c.source for c in cells],
        ]))
        cells_s = time.monotonic() - t0

        assert probe["status"] == "ok", probe["outputs"]
        seen = json.loads(probe["outputs"][0]["text"])
        kernel_pid = seen["pid"]
        assert Path(seen["prefix"]).resolve() == tasks.VENV.resolve()  # the venv's Python
        assert Path(seen["cwd"]).resolve() == tasks.CHAPTERS.resolve()
        assert seen["data"] == str((tmp_path / "data").resolve())
        assert seen["mode"] == "quick"

        for cell, result in zip(cells, chapter):
            where = f"{CHAPTER.name}, cell {cell.get('id')}"
            assert result["status"] == "ok", f"{where} failed: {result['outputs']}"
            assert not [o for o in result["outputs"] if o["output_type"] == "error"], where
        for cell in compared:
            result = chapter[cells.index(cell)]
            assert compared_text(cell.outputs), f"cell {cell.get('id')} stores no text"
            assert compared_text(result["outputs"]) == compared_text(cell.outputs), (
                f"{CHAPTER.name}, cell {cell.get('id')}: outputs differ from the stored ones")
        print(f"JupyterLab answered after {up_s:.1f} s; {len(cells)} chapter cells "
              f"({len(compared)} compared) ran in {cells_s:.1f} s with the probe")

        server.request("POST", "/api/shutdown")
        process.wait(timeout=60)
        assert process.returncode == 0, server.log_tail()
        assert process_gone(kernel_pid, 15), "the kernel outlived the server"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)
        if kernel_pid is not None and not process_gone(kernel_pid, 5):
            os.kill(kernel_pid, 9)
