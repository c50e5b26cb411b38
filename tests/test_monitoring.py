"""Seeing and steering workers: the registry, status, pause/resume, jobs from the CLI.

Workers are real ``aqueue worker`` processes of ``tests/ops_app.py`` (lease 1.5 s: they beat
every half second); the commands run as real processes too.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, has_status, read_as
from tests.internals import Keys, send_command

# The workers and commands are processes: the test's own loop makes no difference.
ONE_LOOP = True
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "tests.ops_app:app"
NO_SERVER = "redis://127.0.0.1:1/0"


def env_for(server: RedisServer, namespace: str) -> dict[str, str]:
    return {
        **os.environ,
        "AQUEUE_URL": server.url,
        "AQUEUE_TEST_NAMESPACE": namespace,
        "PYTHONPATH": ROOT,
    }


def _aqueue(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m aqueue ARGS`` in ``env``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "aqueue", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=30,
        cwd=ROOT,
    )


def run_cli(
    server: RedisServer, namespace: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return _aqueue(env_for(server, namespace), *args, stdin=stdin)


def run_cli_without_server(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI pointed at a port where no Redis answers."""
    return _aqueue({**os.environ, "AQUEUE_URL": NO_SERVER, "PYTHONPATH": ROOT}, *args)


@contextmanager
def worker_process(
    server: RedisServer, namespace: str, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """An ``aqueue worker`` process of the test app; killed at the end if still running."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aqueue", "worker", APP, "--loop", "asyncio", *args],
            env=env_for(server, namespace),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def producer(server: RedisServer, namespace: str) -> aqueue.App:
    return aqueue.App(server.url, namespace=namespace, lease=1.5)


async def _workers(app: aqueue.App) -> list[aqueue.WorkerInfo]:
    return await app.workers()


async def _registered(app: aqueue.App, pid: int) -> bool:
    return any(w.pid == pid for w in await app.workers())


async def test_a_worker_process_registers_what_it_serves_and_what_it_knows(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default", "-c", "7") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            [info] = await producer.workers()
    assert info.pid == process.pid
    assert info.queues == ("default",)
    assert info.concurrency == 7
    assert info.version == aqueue.__version__
    assert set(info.tasks) == {
        "tests.ops_app.add",
        "tests.ops_app.boom",
        "tests.ops_app.nap",
        "tests.ops_app.elsewhere",
        "tests.ops_app.price",
    }
    assert info.id.startswith(f"{info.host}-{process.pid}-")


async def test_a_worker_counts_the_jobs_it_ran_and_those_that_failed(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        async with producer:
            await producer.enqueue("tests.ops_app.add", 1, 2)
            failing = await producer.enqueue("tests.ops_app.boom")
            with pytest.raises(aqueue.TaskFailed):
                await failing.result(timeout=15)

            async def counted() -> bool:
                workers = await producer.workers()
                return bool(workers) and (workers[0].processed, workers[0].failed) == (2, 1)

            await eventually(counted, timeout=5)


async def test_a_killed_worker_disappears_from_the_registry_within_about_a_lease(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace) as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            process.send_signal(signal.SIGKILL)
            process.wait()
            # Its record lives one lease (1.5 s) past its last beat.
            await eventually(lambda: _none_left(producer), timeout=2.5)


async def test_a_stopped_worker_leaves_the_registry_at_once(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace) as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
            assert await producer.workers() == []


async def _none_left(app: aqueue.App) -> bool:
    return not await app.workers()


async def test_the_workers_command_prints_each_live_worker(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default", "-q", "other") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
        table = run_cli(server, namespace, "workers", APP)
        as_json = run_cli(server, namespace, "workers", APP, "--json")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:4] == ["worker", "host", "pid", "queues"]
    assert str(process.pid) in row.split()
    assert "default,other" in row.split()
    [record] = json.loads(as_json.stdout)
    assert record["pid"] == process.pid
    assert record["queues"] == ["default", "other"]
    assert record["concurrency"] == 100


def test_the_workers_command_says_when_none_is_alive(server: RedisServer, namespace: str) -> None:
    result = run_cli(server, namespace, "workers", APP)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no live workers\n"


async def test_status_shows_the_queues_and_the_live_workers(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
        result = run_cli(server, namespace, "status", APP, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_queue = {q["queue"]: q for q in report["queues"]}
    assert (by_queue["default"]["workers"], by_queue["other"]["workers"]) == (1, 0)
    assert [w["pid"] for w in report["workers"]] == [process.pid]


def test_status_without_a_server_is_a_one_line_error(namespace: str) -> None:
    result = run_cli_without_server("status", APP)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach Redis at {NO_SERVER}")
    assert "Traceback" not in result.stderr


# -- queues nothing knows ---------------------------------------------------------------------


def test_status_of_a_queue_nothing_knows_says_so_in_one_line_naming_the_known_ones(
    server: RedisServer, namespace: str
) -> None:
    result = run_cli(server, namespace, "status", APP, "-q", "defualt")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no queue 'defualt' in namespace '{namespace}': the app does not name it, no "
        "live worker serves it and Redis holds nothing of it. Known queues: default, other "
        "(check the spelling, and the namespace)\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["pause"],
        ["resume"],
        ["purge", "--yes"],
        ["dead-letters", "ls"],
        ["dead-letters", "replay"],
        ["dead-letters", "purge", "--yes"],
    ],
)
def test_each_command_taking_a_queue_refuses_one_nothing_knows(
    server: RedisServer, namespace: str, command: list[str]
) -> None:
    result = run_cli(server, namespace, *command, APP, "-q", "typo")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no queue 'typo' in namespace")


async def test_status_shows_an_empty_queue_the_app_does_not_name_once_it_held_jobs(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    @producer.task(name="tests.ops_app.add", queue="side")
    async def add(x: int, y: int) -> int:
        return x + y

    async with producer:
        await add.enqueue(1, 2)
        await producer.queue("side").purge_queued()
    result = run_cli(server, namespace, "status", APP, "-q", "side", "--json")
    assert result.returncode == 0, result.stderr
    [side] = json.loads(result.stdout)["queues"]
    assert (side["queue"], side["queued"]) == ("side", 0)


async def test_status_shows_a_queue_the_app_does_not_name_that_a_live_worker_serves(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "side") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
        result = run_cli(server, namespace, "status", APP, "-q", "side", "--json")
    assert result.returncode == 0, result.stderr
    [side] = json.loads(result.stdout)["queues"]
    assert (side["queue"], side["workers"]) == ("side", 1)


# -- pause / resume ---------------------------------------------------------------------------


def _producer_tasks(app: aqueue.App) -> tuple[aqueue.Task[[int, int], int], aqueue.Task[[], str]]:
    """The test app's ``add`` and ``elsewhere`` as the producer knows them (for options)."""

    @app.task(name="tests.ops_app.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tests.ops_app.elsewhere", queue="other")
    async def elsewhere() -> str:
        return "done"

    return add, elsewhere


async def _stays_queued(job: aqueue.Job[Any], seconds: float = 1.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await job.status() is not aqueue.JobStatus.QUEUED:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_paused_queue_is_not_read_until_it_is_resumed(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            assert run_cli(server, namespace, "pause", APP, "-q", "default").stdout == (
                "default: paused\n"
            )
            await asyncio.sleep(0.3)  # the workers' next promote step tells them
            job = await producer.enqueue("tests.ops_app.add", 1, 2)
            assert await _stays_queued(job)
            status = run_cli(server, namespace, "status", APP, "-q", "default")
            assert status.stdout.splitlines()[1].split()[6] == "yes"
            assert run_cli(server, namespace, "resume", APP, "-q", "default").returncode == 0
            assert await job.result(timeout=5) == 3


async def test_a_job_running_when_its_queue_is_paused_finishes(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        async with producer:
            job = await producer.enqueue("tests.ops_app.nap", 2.5)  # past the 1.5 s lease
            await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING), timeout=15)
            await producer.queue("default").pause()
            assert await job.result(timeout=10) == "rested"
            info = await job.info()
    assert info.attempts == 1  # its lease was renewed: no other delivery


async def test_a_delayed_job_becomes_due_but_waits_for_the_resume(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    add, _ = _producer_tasks(producer)
    with worker_process(server, namespace, "-q", "default") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            await producer.queue("default").pause()
            await asyncio.sleep(0.3)
            job = await add.options(delay=0.2).enqueue(2, 2)
            await eventually(lambda: has_status(job, aqueue.JobStatus.QUEUED), timeout=5)
            assert await _stays_queued(job)
            await producer.queue("default").resume()
            assert await job.result(timeout=5) == 4


async def test_a_worker_started_on_a_paused_queue_reads_nothing_from_it(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    async with producer:
        await producer.queue("default").pause()
        job = await producer.enqueue("tests.ops_app.add", 1, 1)
        with worker_process(server, namespace, "-q", "default") as process:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            assert await _stays_queued(job)
            await producer.queue("default").resume()
            assert await job.result(timeout=5) == 2


async def test_pausing_one_queue_leaves_the_worker_serving_its_others(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    _, elsewhere = _producer_tasks(producer)
    with worker_process(server, namespace, "-q", "default", "-q", "other") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
            await producer.queue("default").pause()
            await asyncio.sleep(0.3)
            held = await producer.enqueue("tests.ops_app.add", 1, 1)
            served = await elsewhere.enqueue()
            assert await served.result(timeout=5) == "done"
            assert await held.status() is aqueue.JobStatus.QUEUED
            assert await producer.queue("default").is_paused()
            assert not await producer.queue("other").is_paused()


# -- jobs from the command line ---------------------------------------------------------------


async def test_enqueue_wait_prints_the_job_id_and_its_result(
    server: RedisServer, namespace: str
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        result = run_cli(
            server, namespace, "enqueue", APP, "tests.ops_app.add", "--args", "[1]",
            "--kwargs", '{"y": 2}', "--wait",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id, value = result.stdout.splitlines()
    assert job_id.startswith("default:")
    assert value == "3"


async def test_enqueue_wait_exits_1_with_the_error_when_the_task_fails(
    server: RedisServer, namespace: str
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        result = run_cli(server, namespace, "enqueue", APP, "tests.ops_app.boom", "--wait")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "boom" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[0]


async def test_enqueue_with_a_queue_and_a_delay_schedules_the_job_there(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    result = run_cli(
        server, namespace, "enqueue", APP, "tests.ops_app.add", "--args", "[1, 1]",
        "-q", "other", "--delay", "60",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.startswith("other:")
    async with producer:
        assert await producer.job(job_id).status() is aqueue.JobStatus.SCHEDULED


def test_enqueue_refuses_arguments_that_are_not_a_json_array(
    server: RedisServer, namespace: str
) -> None:
    result = run_cli(server, namespace, "enqueue", APP, "tests.ops_app.add", "--args", "{}")
    assert result.returncode == 2
    assert "must be an array" in result.stderr


async def test_the_job_command_shows_a_finished_job_with_its_result(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default") as process:
        async with producer:
            job = await producer.enqueue("tests.ops_app.add", 2, 3)
            assert await job.result(timeout=15) == 5
        result = run_cli(server, namespace, "job", APP, job.id, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["status"], record["task"], record["result"]) == (
        "succeeded",
        "tests.ops_app.add",
        5,
    )
    assert record["attempts"] == 1
    assert f"-{process.pid}-" in record["worker"]
    assert record["started_at"] is not None
    assert record["finished_at"] is not None


async def test_the_job_command_shows_a_typed_result_as_the_json_its_task_sends(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        async with producer:
            job = await producer.enqueue("tests.ops_app.price", "9.90")
            await job.result(timeout=15)
        shown = run_cli(server, namespace, "job", APP, job.id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["result"] == "9.90"


async def test_the_job_command_shows_a_failed_job_with_its_traceback(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        async with producer:
            job = await producer.enqueue("tests.ops_app.boom")
            with pytest.raises(aqueue.TaskFailed):
                await job.result(timeout=15)
        result = run_cli(server, namespace, "job", APP, job.id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "status:      failed" in lines
    assert "error:       builtins.ValueError: boom" in lines
    assert lines[lines.index("traceback:") + 1] == "Traceback (most recent call last):"
    assert 'raise ValueError("boom")' in result.stdout


async def test_the_job_command_shows_the_arguments_of_a_queued_job(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    async with producer:
        job = await producer.enqueue("tests.ops_app.add", 4, y=5)
    result = run_cli(server, namespace, "job", APP, job.id, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "queued"
    assert record["arguments"] == {"args": [4], "kwargs": {"y": 5}}


async def test_the_job_command_shows_the_arguments_of_a_job_that_ran(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default"):
        async with producer:
            job = await producer.enqueue("tests.ops_app.add", 4, y=5)
            assert await job.result(timeout=15) == 9
    result = run_cli(server, namespace, "job", APP, job.id, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["arguments"] == {"args": [4], "kwargs": {"y": 5}}


async def _ran_add(server: RedisServer, namespace: str, kept_arguments_size: int) -> str:
    """The id of an ``add(4, 5)`` job run by a worker keeping that many bytes of arguments."""
    async with aqueue.App(
        server.url, namespace=namespace, kept_arguments_size=kept_arguments_size
    ) as app:
        add, _ = _producer_tasks(app)
        job = await add.enqueue(4, 5)
        async with aqueue.Worker(app):
            await job.result(timeout=5)
    return job.id


async def test_the_job_command_gives_the_size_of_arguments_too_large_to_keep(
    server: RedisServer, namespace: str
) -> None:
    job_id = await _ran_add(server, namespace, kept_arguments_size=8)
    result = run_cli(server, namespace, "job", APP, job_id)
    assert result.returncode == 0, result.stderr
    size = len(b"[[4,5],{}]")
    assert f"args:        ({size} bytes, not kept)" in result.stdout.splitlines()


async def test_a_job_run_by_an_app_keeping_no_arguments_shows_none(
    server: RedisServer, namespace: str
) -> None:
    job_id = await _ran_add(server, namespace, kept_arguments_size=0)
    result = run_cli(server, namespace, "job", APP, job_id, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["arguments"], record["arguments_size"]) == (None, None)


def test_the_job_command_exits_1_for_a_job_without_a_record(
    server: RedisServer, namespace: str
) -> None:
    unknown = "default:" + "0" * 32
    result = run_cli(server, namespace, "job", APP, unknown)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no record of job {unknown}")


async def test_purge_asks_first_then_drops_the_queued_jobs_and_leaves_running_ones(
    server: RedisServer, namespace: str, producer: aqueue.App, redis: Redis
) -> None:
    keys = Keys(namespace, "default")
    async with producer:
        running = await producer.enqueue("tests.ops_app.add", 0, 0)
        await read_as(redis, keys, "busy-worker")  # delivered: pending, as a running job is
        queued = [await producer.enqueue("tests.ops_app.add", i, i) for i in range(3)]
        declined = run_cli(server, namespace, "purge", APP, "-q", "default", stdin="n\n")
        assert declined.returncode == 1
        assert (await producer.queue("default").stats()).queued == 3
        result = run_cli(server, namespace, "purge", APP, "-q", "default", "--yes")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "dropped 3 queued job(s) from default\n"
        stats = await producer.queue("default").stats()
        assert (stats.queued, stats.running) == (0, 1)
        for job in queued:
            with pytest.raises(aqueue.JobCancelled):
                await job.result(timeout=1)
        assert await running.status() is aqueue.JobStatus.QUEUED  # never started by aqueue


def test_check_exits_1_naming_the_queues_without_a_live_worker(
    server: RedisServer, namespace: str
) -> None:
    result = run_cli(server, namespace, "check", APP)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: no live worker serves queue(s) default, other in namespace"
    )


async def test_check_exits_0_when_each_queue_has_a_live_worker(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with worker_process(server, namespace, "-q", "default") as process:
        async with producer:
            await eventually(lambda: _registered(producer, process.pid), timeout=15)
        served = run_cli(server, namespace, "check", APP, "-q", "default")
        unserved = run_cli(server, namespace, "check", APP)
    assert served.returncode == 0, served.stderr
    assert unserved.returncode == 1
    assert unserved.stderr.startswith("error: no live worker serves queue(s) other in namespace")


def test_check_exits_1_when_redis_does_not_answer() -> None:
    result = run_cli_without_server("check", APP)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach Redis")


# -- remote control ---------------------------------------------------------------------------


async def _ids_when_registered(app: aqueue.App, *pids: int) -> dict[int, str]:
    async def all_there() -> bool:
        return {w.pid for w in await app.workers()} >= set(pids)

    await eventually(all_there, timeout=20)
    return {w.pid: w.id for w in await app.workers()}


async def test_control_ping_is_answered_by_every_live_worker(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with (
        worker_process(server, namespace) as first,
        worker_process(server, namespace) as second,
    ):
        async with producer:
            ids = await _ids_when_registered(producer, first.pid, second.pid)
        result = run_cli(server, namespace, "control", APP, "ping")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(f"{i}: pong" for i in ids.values())


async def test_control_shutdown_stops_one_worker_gracefully_and_loses_nothing(
    server: RedisServer, namespace: str, producer: aqueue.App
) -> None:
    with (
        worker_process(server, namespace, "-q", "default") as target,
        worker_process(server, namespace, "-q", "other") as bystander,
    ):
        async with producer:
            ids = await _ids_when_registered(producer, target.pid, bystander.pid)
            job = await producer.enqueue("tests.ops_app.nap", 1.0)
            await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING), timeout=15)
            result = run_cli(
                server, namespace, "control", APP, "shutdown", "--worker", ids[target.pid]
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout == f"{ids[target.pid]}: stopping\n"
            assert target.wait(15) == 0
            assert await job.result(timeout=1) == "rested"  # finished before the exit
            assert [w.pid for w in await producer.workers()] == [bystander.pid]
            assert bystander.poll() is None


def test_control_shutdown_names_its_workers(server: RedisServer, namespace: str) -> None:
    result = run_cli(server, namespace, "control", APP, "shutdown")
    assert result.returncode == 2
    assert "shutdown needs --worker ID or --all" in result.stderr


def test_control_refuses_a_worker_that_is_not_alive(server: RedisServer, namespace: str) -> None:
    result = run_cli(server, namespace, "control", APP, "ping", "--worker", "ghost")
    assert result.returncode == 1
    assert result.stderr.startswith("error: no live worker named ghost")


async def test_a_worker_answers_a_command_sent_as_soon_as_it_started(app: aqueue.App) -> None:
    async with aqueue.Worker(app, grace_period=1) as worker:
        answers, _ = await send_command(app, "ping", [worker.name], 2.0)
    assert answers == {worker.name: "pong"}


async def test_a_worker_that_answered_a_command_leaves_no_connection_open(
    app: aqueue.App,
) -> None:
    async with aqueue.Worker(app, grace_period=1) as worker:
        answers, _ = await send_command(app, "ping", [worker.name], 2.0)
        assert worker.name in answers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()  # an unclosed connection warns as it is collected
    assert [str(w.message) for w in caught if "unclosed" in str(w.message)] == []
