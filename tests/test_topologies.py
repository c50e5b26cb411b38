"""The suite's ``--topology`` option (tests/conftest.py): the tests that reach a server run on
each deployment chosen, and those that need one server say why they skip there; and the
``one_loop`` mark, which runs a test on one event loop instead of both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
MODULE = "tests/test_direct.py"
"""Tests that reach a server, one that does not, and a mark that skips them on a Cluster."""
OWN_SERVER = "tests/test_web_browser.py"
"""A module whose ``server`` fixture, of its own, overrides the suite's."""


def pytest_run(*args: str, module: str = MODULE) -> str:
    """The output of a pytest run of ``module`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    ).stdout


def collected(*args: str, module: str = MODULE) -> list[str]:
    """The ids ``args`` collect of ``module`` (of ``MODULE``: of its batch test and of a test
    that reaches no server, on asyncio)."""
    if module == MODULE:
        args = (*args, "-k", "(pieces or handed) and not uvloop")
    output = pytest_run("--collect-only", *args, module=module)
    return sorted(line.removeprefix(f"{module}::") for line in output.splitlines() if "::" in line)


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


def test_a_module_with_a_server_of_its_own_runs_each_test_once_with_the_single_servers() -> None:
    ids = collected(module=OWN_SERVER)
    assert ids
    assert not [test for test in ids if "[" in test]  # not once per kind of the suite's server
    assert collected("--topology", "cluster", module=OWN_SERVER) == []


def test_a_test_marked_not_on_a_topology_is_skipped_there_saying_why() -> None:
    output = pytest_run("--topology", "cluster", "-k", "pieces and not uvloop", "-rs")
    assert "1 skipped" in output
    assert "not on cluster: these test one server's fast path" in output


def test_a_test_marked_one_loop_runs_once_on_each_server() -> None:
    assert collected("-k", "waiting_producers", module="tests/test_flow.py") == [
        "test_waiting_producers_never_write_a_job_twice[redis]",
        "test_waiting_producers_never_write_a_job_twice[valkey]",
    ]
