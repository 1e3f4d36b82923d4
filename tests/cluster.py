"""A cluster of worker processes on this machine, for the tests of chapter 10's trainers.

:func:`run_local_workers` starts one process per command with a ``TF_CONFIG``
(:func:`cifar_tutorial.distribute.tf_config`) naming free ports on 127.0.0.1, and
:func:`worker_summary` reads back the weights digest each worker printed.
``tests/test_distribute.py`` trains with ``MultiWorkerMirroredStrategy`` through it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from cifar_tutorial.distribute import tf_config


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ask the system for ``count`` distinct free TCP ports on ``host``.

    The ports are free when this returns; another program could take one before
    the workers bind it, which is unlikely within seconds.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclasses.dataclass
class WorkerResult:
    """How one worker process of :func:`run_local_workers` ended.

    Attributes
    ----------
    index : int
        The worker's index in ``TF_CONFIG``.
    returncode : int or None
        Its exit status (negative: killed by that signal).
    output : str
        Its standard output and error, interleaved.
    timed_out : bool
        Whether it was killed because the run took too long, or because another
        worker had failed (the others would otherwise wait for it forever).
    """

    index: int
    returncode: int | None
    output: str
    timed_out: bool = False


def run_local_workers(
    commands: Sequence[Sequence[str]],
    *,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    grace: float = 10.0,
) -> list[WorkerResult]:
    """Start one process per command as the workers of a cluster on 127.0.0.1.

    Worker ``i`` runs ``commands[i]`` with ``TF_CONFIG`` naming free ports on this
    machine and index ``i`` (0 is the chief). All are killed when ``timeout``
    seconds have passed, or ``grace`` seconds after one of them has failed, since
    the others would wait for it forever.

    Parameters
    ----------
    commands : sequence of sequence of str
        One command line per worker, e.g. ``[sys.executable, "-m",
        "cifar_tutorial", "train", "--strategy", "multiworker", ...]``.
    timeout : float
        Seconds before every worker still running is killed.
    env : dict, optional
        Extra environment variables for every worker.
    grace : float
        Seconds the others get to finish after a worker failed.

    Returns
    -------
    list of WorkerResult
        One per worker, in index order.
    """
    workers = [f"127.0.0.1:{port}" for port in free_ports(len(commands))]
    procs, logs = [], []
    try:
        for i, command in enumerate(commands):
            log = tempfile.TemporaryFile(mode="w+")
            logs.append(log)
            worker_env = {**os.environ, **(env or {}), "TF_CONFIG": tf_config(workers, i)}
            procs.append(subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                          env=worker_env, text=True))
        deadline = time.monotonic() + timeout
        killed: set[int] = set()
        while any(p.poll() is None for p in procs):
            failed = any(p.returncode not in (None, 0) for p in procs)
            if failed:
                deadline = min(deadline, time.monotonic() + grace)
            if time.monotonic() > deadline:
                for i, p in enumerate(procs):
                    if p.poll() is None:
                        p.kill()
                        killed.add(i)
            time.sleep(0.2)
        results = []
        for i, (p, log) in enumerate(zip(procs, logs)):
            log.seek(0)
            results.append(WorkerResult(i, p.wait(), log.read(), i in killed))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def worker_summary(results: Sequence[WorkerResult]) -> dict[str, Any]:
    """Exit codes and the weights digest each worker printed (``None`` where none)."""
    digests = []
    for r in results:
        found = re.findall(r"[Ww]eights digest:? ([0-9a-f]{12})", r.output)
        digests.append(found[-1] if found else None)
    return {"returncodes": [r.returncode for r in results], "digests": digests}
