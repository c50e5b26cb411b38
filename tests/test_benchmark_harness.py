"""The benchmark harness's own set-up (the measurements are benchmarks/run.py's)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _server_module() -> Any:
    return _load("bench_server", "benchmarks/_server.py")


@pytest.fixture
def scaling(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """benchmarks/scaling.py, whose imports (run, peers) are forgotten again after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts benchmarks/ first
    yield _load("bench_scaling", "benchmarks/scaling.py")
    benchmarks = ROOT / "benchmarks"
    for name, module in list(sys.modules.items()):
        if benchmarks in Path(getattr(module, "__file__", None) or "/").parents:
            del sys.modules[name]


def test_the_benchmarks_run_on_the_embedded_valkey_without_redis_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH that holds no redis-server
    server = _server_module().redis_server()
    try:
        assert Path(server.binary).name == "valkey-server"
    finally:
        server.close()


def test_scaling_measures_one_and_four_queues_on_a_cluster_unless_told_otherwise(
    scaling: Any,
) -> None:
    assert scaling.parse(["--cluster"]).queues == [1, 4]
    assert scaling.parse(["--cluster", "--queues", "2,3"]).queues == [2, 3]


def test_scaling_measures_one_and_eight_queues_on_one_redis(scaling: Any) -> None:
    args = scaling.parse([])
    assert (args.cluster, args.queues) == (False, [1, 8])


def test_scaling_names_the_master_that_serves_each_queue_of_a_cluster(scaling: Any) -> None:
    masters = {"slots 0-5460": 1.0, "slots 5461-10922,16000-16383": 2.0}
    point = {"tree": "t", "queues": 4, "processes": 1, "server_cpu_us_per_task_by_master": masters}
    text = scaling.by_master([point], [1, 4])
    assert "| q0 | 3387 | slots 0-5460 |" in text
    assert "| default | 5718 | slots 5461-10922,16000-16383 |" in text
    assert "| q3 | 15704 | ? |" in text  # no master of these serves 15704
    assert "| t | 4 | 1 | 1.0 µs | 2.0 µs |" in text


def test_scaling_explains_each_point_by_its_reads_finishes_and_deletions(scaling: Any) -> None:
    """From the commands' calls per task: 200 tasks per read, 400 per finish, every other
    finish deleting entries by id."""
    commands = {
        "xreadgroup": {"calls": 0.005, "us": 1.0},
        "xack": {"calls": 0.0025, "us": 0.5},
        "xdel": {"calls": 0.00125, "us": 2.25},
    }
    point = {
        "tree": "t",
        "queues": 1,
        "processes": 4,
        "socket_reads_per_task": 0.0321,
        "commands_per_task": commands,
        "load_before": 1.5,
    }
    assert "| t | 1 | 4 | 0.032 | 200 | 400 | 50% | 2.25 | 1.5 |" in scaling.explained([point])
