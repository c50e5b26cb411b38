"""Fault tests: real worker processes, real servers, real faults; every one bounded in time.

Each test reports its figures (enqueued, completed, lost, duplicated, redelivery latency)
through the `report` fixture; they are printed at the end of the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Deployment

ROOT = Path(__file__).parent.parent.parent
_FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("fault test figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a test's figures for the summary at the end of the run."""

    def record(**figures: object) -> None:
        values = ", ".join(f"{name}={value}" for name, value in figures.items())
        _FIGURES.append(f"{request.node.name}: {values}")

    return record


class WorkerProcess:
    """An `aqueue worker` process of the fault app, with its output in a file."""

    def __init__(self, server: Deployment, namespace: str, env: dict[str, str], *args: str):
        # Open for as long as the process lives; closed by the fixture that started it.
        self.log = tempfile.NamedTemporaryFile(prefix="aqueue-worker-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aqueue", "worker", "tests.faults.fault_app:app", *args],
            env={
                **os.environ,
                "AQUEUE_URL": server.url,
                "FAULT_NAMESPACE": namespace,
                "PYTHONPATH": str(ROOT),
                **env,
            },
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return Path(self.log.name).read_text()

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when the process still runs after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def spawn(server: Deployment, namespace: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes of the fault app; any still running are killed at the end."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(server, namespace, env, "--log-level", "INFO", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
        worker.log.close()
