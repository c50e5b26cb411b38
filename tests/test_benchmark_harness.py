"""The benchmark harness's own set-up (the measurements are benchmarks/run.py's)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
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


def _point(processes: int, runs: float, acks: float, unacked: int, us: float) -> dict[str, Any]:
    return {
        "tree": "t",
        "queues": 1,
        "processes": processes,
        "ok": True,
        "tasks_per_s": runs,
        "acked_tasks_per_s": acks,
        "unacked_after_last_run": unacked,
        "server_cpu_us_per_task": us,
    }


def test_scaling_shows_each_drain_rate_to_the_last_ack_beside_the_fewest_processes(
    scaling: Any,
) -> None:
    """18,000 tasks/s acked is 0.90 of 1 process's 20,000, though its runs went faster; at
    5.5 µs each it is a tenth of a core."""
    text = scaling.rates([_point(1, 20_500, 20_000, 300, 5.0), _point(8, 24_000, 18_000, 9, 5.5)])
    assert "| t | 1 | 1 | 20,000 | 1.00 | 20,500 | 300 | 5.0 µs | 10% |" in text
    assert "| t | 1 | 8 | 18,000 | 0.90 | 24,000 | 9 | 5.5 µs | 10% |" in text


@pytest.mark.parametrize("given", ["0", "0.005", "1.5", "-0.1"])
def test_scaling_refuses_a_server_cap_outside_a_hundredth_to_one_core(
    scaling: Any, given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        scaling.parse(["--server-cpu", given])
    assert "is not a fraction of one core from 0.01 to 1" in capsys.readouterr().err


def test_scaling_refuses_a_server_cap_on_a_cluster(
    scaling: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        scaling.parse(["--cluster", "--server-cpu", "0.1"])
    assert "leave it out with --cluster" in capsys.readouterr().err


@pytest.fixture
def cgroup() -> Any:
    return _load("bench_cgroup", "benchmarks/_cgroup.py")


@pytest.mark.parametrize(("fraction", "period"), [(1.0, 5_000), (0.1, 10_000), (0.01, 100_000)])
def test_a_cap_runs_the_server_every_few_ms_with_at_least_the_kernels_1_ms_quota(
    cgroup: Any, fraction: float, period: int
) -> None:
    assert cgroup.period_us(fraction) == period
    assert round(period * fraction) >= 1_000


def test_a_cap_uses_cgroup_v1s_cpu_hierarchy_where_one_is_mounted(cgroup: Any) -> None:
    mounts = (
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
        "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n"
    )
    assert cgroup.controller(mounts) == (Path("/sys/fs/cgroup/cpu,cpuacct"), 1)


def test_a_cap_uses_cgroup_v2_where_its_root_hands_the_cpu_controller_down(
    cgroup: Any, tmp_path: Path
) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("cpuset cpu io memory pids\n")
    mounts = (
        f"cgroup /sys/fs/cgroup/cpuacct cgroup rw,cpuacct 0 0\ncgroup2 {tmp_path} cgroup2 rw 0 0\n"
    )
    assert cgroup.controller(mounts) == (tmp_path, 2)


def test_a_cap_without_a_cpu_controller_says_what_to_do(cgroup: Any, tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("memory pids\n")
    with pytest.raises(SystemExit, match=r"cpu controller\. Mount .*or leave out --server-cpu"):
        cgroup.controller(f"cgroup2 {tmp_path} cgroup2 rw 0 0\n")


def test_a_capped_process_runs_in_a_group_of_its_own_that_is_removed_after(cgroup: Any) -> None:
    try:
        mount = cgroup.controller(cgroup.MOUNTS.read_text())
    except SystemExit as missing:
        pytest.skip(str(missing))
    if not os.access(mount.root, os.W_OK):
        pytest.skip(f"{mount.root} is not writable here (not root)")
    with cgroup.cpu_cap(0.1) as cap:
        process = subprocess.Popen(["sleep", "30"])
        try:
            cap(process.pid)
            (group,) = mount.root.glob(f"aqueue-bench-{os.getpid()}")
            assert f"aqueue-bench-{os.getpid()}" in Path(f"/proc/{process.pid}/cgroup").read_text()
            quota = "cpu.cfs_quota_us" if mount.version == 1 else "cpu.max"
            assert (group / quota).read_text().split()[0] == "1000"
        finally:
            process.kill()
            process.wait()
    assert not group.exists()
