"""The synchronous producer example, run as a user runs it, against real servers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aqueue.testing import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # starts a worker process
def test_threads_of_the_sync_example_each_get_their_jobs_result(server: RedisServer) -> None:
    result = subprocess.run(
        [sys.executable, os.path.join("examples", "sync_producer.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "AQUEUE_URL": server.url, "PYTHONPATH": ROOT},
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ", ".join(f"{n} words" for n in range(2, 10)) + "\n"
