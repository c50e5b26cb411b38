"""Real ``aqueue worker`` processes of ``tests/procs_app.py``, for the tests that need them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from aqueue.testing import RedisServer

ROOT = Path(__file__).parent.parent
APP = "tests.procs_app:app"


class Process:
    """An ``aqueue worker`` process with its output in a file."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[str], env: dict[str, str]):
        self.process = process
        self._log = log
        self.env = env
        """The environment it runs in (the server's URL, the namespace), for commands."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when the process still runs after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@contextmanager
def worker_process(
    server: RedisServer, namespace: str, *args: str, cwd: Path = ROOT, app: str = APP
) -> Iterator[Process]:
    """An ``aqueue worker`` process; stopped (then killed) at the end if still running."""
    env = {
        **os.environ,
        "AQUEUE_URL": server.url,
        "AQUEUE_TEST_NAMESPACE": namespace,
        "PYTHONPATH": str(ROOT),
    }
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aqueue", "worker", app, "--loop", "asyncio", *args],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Process(process, log, env)
        finally:
            if process.poll() is None:
                # Gracefully first: a supervisor killed outright leaves its children to
                # notice on their own, a second later.
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
