"""The suite's ``--topology`` option (tests/conftest.py): the tests that reach a server run on
each deployment chosen, and those that need one server say why they skip there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
MODULE = "tests/test_direct.py"
"""Tests that reach a server, one that does not, and a mark that skips them on a Cluster."""


def pytest_run(*args: str) -> str:
    """The output of a pytest run of ``MODULE`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, MODULE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    ).stdout


def collected(*args: str) -> list[str]:
    """The ids of ``MODULE``'s batch test and of a test that reaches no server, on asyncio."""
    output = pytest_run("--collect-only", *args, "-k", "(pieces or handed) and not uvloop")
    return sorted(line.removeprefix(f"{MODULE}::") for line in output.splitlines() if "::" in line)


def test_by_default_each_test_reaching_a_server_runs_on_valkey_and_on_redis() -> None:
    assert collected() == [
        "test_a_batch_written_in_pieces_gets_every_reply_in_order[asyncio-redis]",
        "test_a_batch_written_in_pieces_gets_every_reply_in_order[asyncio-valkey]",
        "test_a_caller_handed_a_connection_as_it_is_cancelled_passes_it_on[asyncio]",
    ]


def test_topologies_run_each_test_reaching_a_server_on_each_and_no_other_test() -> None:
    assert collected("--topology", "cluster", "--topology", "sentinel") == [
        "test_a_batch_written_in_pieces_gets_every_reply_in_order[asyncio-cluster]",
        "test_a_batch_written_in_pieces_gets_every_reply_in_order[asyncio-sentinel]",
    ]


def test_a_test_marked_not_on_a_topology_is_skipped_there_saying_why() -> None:
    output = pytest_run("--topology", "cluster", "-k", "pieces and not uvloop", "-rs")
    assert "1 skipped" in output
    assert "not on cluster: these test one server's fast path" in output
