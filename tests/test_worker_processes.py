"""``aqueue worker`` as processes: -p N under a supervisor, recycling, --burst, --reload.

Workers are real ``aqueue worker`` processes of ``tests/procs_app.py``; each job counts its
runs in Redis, so a lost or a repeated job shows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually
from tests.processes import ROOT, Process, worker_process

ONE_LOOP = True  # the workers are processes: the test's own loop makes no difference

pytestmark = pytest.mark.slow


@pytest.fixture
async def producer(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(server.url, namespace=namespace, lease=1.5) as app:
        yield app


async def _pids(app: aqueue.App) -> set[int]:
    return {worker.pid for worker in await app.workers()}


async def _runs(redis: Redis, namespace: str) -> dict[int, int]:
    raw = await redis.hgetall(f"{namespace}:runs")
    return {int(key): int(value) for key, value in raw.items()}


async def test_dash_p_runs_that_many_registered_worker_processes(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        await eventually(lambda: _count_is(producer, 2), timeout=20)
        pids = await _pids(producer)
        assert supervisor.pid not in pids
        assert all(_parent_of(pid) == supervisor.pid for pid in pids)


async def _count_is(app: aqueue.App, count: int) -> bool:
    return len(await app.workers()) == count


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def test_a_killed_worker_process_is_restarted(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        await eventually(lambda: _count_is(producer, 2), timeout=20)
        first = await _pids(producer)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            pids = await _pids(producer)
            return len(pids) == 2 and victim not in pids

        await eventually(replaced, timeout=20)
        assert f"worker process {victim} was killed by SIGKILL; restarting it" in supervisor.output


async def test_sigterm_to_the_supervisor_lets_running_jobs_finish_and_exits_0(
    server: RedisServer, namespace: str, producer: aqueue.App, redis: Redis
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        await eventually(lambda: _count_is(producer, 2), timeout=20)
        jobs = [await producer.enqueue("tests.procs_app.work", n, 1.5) for n in range(20)]
        await eventually(lambda: _all_started(redis, namespace, 20), timeout=10)
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.wait(20) == 0
    assert [await job.result(timeout=1) for job in jobs] == list(range(20))
    assert set((await _runs(redis, namespace)).values()) == {1}
    assert await producer.workers() == []


async def _all_started(redis: Redis, namespace: str, count: int) -> bool:
    return len(await _runs(redis, namespace)) == count


async def test_recycled_worker_processes_run_every_job_exactly_once(
    server: RedisServer, namespace: str, producer: aqueue.App, redis: Redis
) -> None:
    with worker_process(
        server, namespace, "-p", "2", "-c", "4", "--max-tasks-per-child", "5"
    ) as supervisor:
        jobs = [await producer.enqueue("tests.procs_app.work", n, 0.05) for n in range(40)]
        results = await asyncio.gather(*(job.result(timeout=40) for job in jobs))
        # A child reads up to -c jobs at a time, so it may start up to 3 more than 5 before
        # it stops: 32 or more of the 40 ran in children that recycled, 8 at most each.
        assert supervisor.output.count("recycled; starting its replacement") >= 4
    assert results == list(range(40))
    assert (await _runs(redis, namespace)) == dict.fromkeys(range(40), 1)


async def test_a_lone_worker_exits_0_after_max_tasks_leaving_the_rest_queued(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    jobs = [await producer.enqueue("tests.procs_app.work", n, 0.0) for n in range(5)]
    with worker_process(server, namespace, "-c", "1", "--max-tasks-per-child", "3") as worker:
        assert worker.wait(20) == 0
    statuses = [await job.status() for job in jobs]
    assert statuses.count(aqueue.JobStatus.SUCCEEDED) == 3
    assert (await producer.queue("default").stats()).queued == 2


async def test_a_worker_above_its_memory_limit_exits_0_once_its_job_ends(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    # Every Python process is above 1 MiB: the first job to end brings the recycle.
    jobs = [await producer.enqueue("tests.procs_app.work", n, 0.0) for n in range(2)]
    with worker_process(server, namespace, "-c", "1", "--max-memory-per-child", "1") as worker:
        assert worker.wait(20) == 0
        assert "above --max-memory-per-child 1" in worker.output
    assert await jobs[0].status() is aqueue.JobStatus.SUCCEEDED
    assert await jobs[1].status() is aqueue.JobStatus.QUEUED


async def test_burst_runs_the_ready_jobs_then_exits_0_leaving_later_ones_scheduled(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    ready = [await producer.enqueue("tests.procs_app.work", n, 0.2) for n in range(10)]

    @producer.task(name="tests.procs_app.work")
    async def work(n: int, seconds: float) -> int:
        return n

    later = await work.options(delay=60).enqueue(99, 0)
    with worker_process(server, namespace, "--burst") as worker:
        assert worker.wait(20) == 0
    assert [await job.status() for job in ready] == [aqueue.JobStatus.SUCCEEDED] * 10
    assert await later.status() is aqueue.JobStatus.SCHEDULED


async def test_burst_with_several_processes_exits_0_once_all_are_done(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    jobs = [await producer.enqueue("tests.procs_app.work", n, 0.1) for n in range(20)]
    with worker_process(server, namespace, "-p", "2", "--burst") as supervisor:
        assert supervisor.wait(30) == 0
    assert [await job.status() for job in jobs] == [aqueue.JobStatus.SUCCEEDED] * 20


async def test_reload_restarts_the_worker_when_a_python_file_changes(
    server: RedisServer, namespace: str, producer: aqueue.App, tmp_path: Path
) -> None:
    module = tmp_path / "reloaded_app.py"
    module.write_text(
        "import os\nimport aqueue\n"
        "app = aqueue.App(namespace=os.environ['AQUEUE_TEST_NAMESPACE'], lease=1.5)\n"
    )
    with worker_process(
        server, namespace, "--reload", cwd=tmp_path, app="reloaded_app:app"
    ) as supervisor:
        await eventually(lambda: _count_is(producer, 1), timeout=20)
        (first,) = await _pids(producer)
        module.write_text(module.read_text() + "# changed\n")

        async def restarted() -> bool:
            pids = await _pids(producer)
            return bool(pids) and first not in pids

        await eventually(restarted, timeout=20)
        assert "code changed: restarting the worker processes" in supervisor.output


async def test_a_sigterm_during_a_recycle_still_lets_the_running_job_finish(
    server: RedisServer, namespace: str, producer: aqueue.App, redis: Redis
) -> None:
    slow = await producer.enqueue("tests.procs_app.work", 1, 3.0)
    with worker_process(server, namespace, "-c", "2", "--max-memory-per-child", "1") as worker:
        await eventually(lambda: _all_started(redis, namespace, 1), timeout=15)
        quick = await producer.enqueue("tests.procs_app.work", 2, 0.0)
        await eventually(lambda: _has_succeeded(quick), timeout=10)  # the recycle begins
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    assert await slow.result(timeout=1) == 1
    assert await _runs(redis, namespace) == {1: 1, 2: 1}


async def _has_succeeded(job: aqueue.Job[int]) -> bool:
    return await job.status() is aqueue.JobStatus.SUCCEEDED


async def test_a_sigterm_while_the_worker_processes_start_exits_0(
    server: RedisServer, namespace: str
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        # Right after the supervisor started them: the children are still importing.
        await eventually(lambda: _said(supervisor, "started (2 of 2)"), timeout=20)
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.wait(15) == 0


async def test_a_second_sigterm_hurries_the_worker_processes_handing_running_jobs_back(
    server: RedisServer, namespace: str, producer: aqueue.App, redis: Redis
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        job = await producer.enqueue("tests.procs_app.work", 1, 60.0)
        await eventually(lambda: _all_started(redis, namespace, 1), timeout=20)
        supervisor.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.wait(15) == 0
        assert "SIGTERM again: hurrying the worker processes" in supervisor.output
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_remote_shutdown_of_every_worker_process_ends_the_supervisor_with_0(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        await eventually(lambda: _count_is(producer, 2), timeout=20)
        shutdown = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aqueue", "control", "tests.procs_app:app", "shutdown", "--all",
            env=supervisor.env, cwd=ROOT,
        )  # fmt: skip
        assert await asyncio.wait_for(shutdown.wait(), 30) == 0
        assert supervisor.wait(20) == 0
        assert supervisor.output.count("stopped and is not replaced") == 2


def test_a_bad_app_fails_at_once_with_several_processes(
    server: RedisServer, namespace: str
) -> None:
    with worker_process(server, namespace, "-p", "2", app="tests.procs_app:nothing") as worker:
        assert worker.wait(20) == 2
        assert "tests.procs_app.nothing is missing, not an aqueue.App" in worker.output
        assert "worker process" not in worker.output


async def test_reload_waits_for_a_fix_when_a_change_breaks_the_app(
    server: RedisServer, namespace: str, producer: aqueue.App, tmp_path: Path
) -> None:
    module = tmp_path / "reloaded_app.py"
    working = (
        "import os\nimport aqueue\n"
        "app = aqueue.App(namespace=os.environ['AQUEUE_TEST_NAMESPACE'], lease=1.5)\n"
    )
    module.write_text(working)
    with worker_process(
        server, namespace, "--reload", cwd=tmp_path, app="reloaded_app:app"
    ) as supervisor:
        await eventually(lambda: _count_is(producer, 1), timeout=20)
        module.write_text(working + "this is not python\n")
        await eventually(lambda: _said(supervisor, "waiting for a change of the code"), timeout=20)
        assert supervisor.process.poll() is None
        module.write_text(working)
        await eventually(lambda: _count_is(producer, 1), timeout=20)


async def _said(process: Process, text: str) -> bool:
    return text in process.output


async def test_worker_processes_stop_gracefully_when_their_supervisor_is_killed(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-p", "2") as supervisor:
        await eventually(lambda: _count_is(producer, 2), timeout=20)
        supervisor.process.kill()
        await eventually(lambda: _count_is(producer, 0), timeout=10)
        assert supervisor.output.count("is gone: stopping") == 2
