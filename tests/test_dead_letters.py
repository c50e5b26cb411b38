"""Dead letters: inspect them, replay them once the cause is fixed, purge them."""

from __future__ import annotations

import os
import subprocess
import sys

from redis import Redis as SyncRedis
from redis.asyncio import Redis

import aqueue
from aqueue._redis._keys import Keys
from aqueue.testing import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def test_dead_letters_list_the_reason_task_and_job(app: aqueue.App) -> None:
    async with aqueue.Worker(app):
        job = await app.enqueue("not.deployed", 1)
        await _wait_failed(job)
    [letter] = await app.queue().dead_letters()
    assert (letter.job_id, letter.task) == (job.id, "not.deployed")
    assert letter.reason.startswith("no task named 'not.deployed'")
    assert letter.payload == b"[[1],{}]"


async def test_a_task_unknown_to_old_workers_runs_once_replayed_to_new_ones(
    app: aqueue.App, redis: Redis
) -> None:
    old = aqueue.App(app.url, namespace=app.namespace)  # a worker deployed before the task
    async with old, aqueue.Worker(old):
        job = await app.enqueue("reports.build", 7)
        await _wait_failed(job)

    @app.task(name="reports.build")
    async def build(n: int) -> str:
        return f"report {n}"

    assert await app.queue().replay_dead() == 1
    assert await job.status() is aqueue.JobStatus.QUEUED
    async with aqueue.Worker(app):
        assert await job.result(timeout=10) == "report 7"
    assert (await job.info()).attempts == 1
    assert await redis.xlen(Keys(app.namespace, "default").dead) == 0


async def test_replaying_one_letter_by_its_id_leaves_the_others(app: aqueue.App) -> None:
    async with aqueue.Worker(app):
        jobs = [await app.enqueue("missing.task", n) for n in (1, 2, 3)]
        for job in jobs:
            await _wait_failed(job)
    letters = await app.queue().dead_letters()
    middle = next(letter for letter in letters if letter.job_id == jobs[1].id)
    assert await app.queue().replay_dead(letter=middle.id) == 1
    left = {letter.job_id for letter in await app.queue().dead_letters()}
    assert left == {jobs[0].id, jobs[2].id}
    assert await jobs[1].status() is aqueue.JobStatus.QUEUED


async def test_purge_deletes_every_dead_letter(app: aqueue.App) -> None:
    async with aqueue.Worker(app):
        for _ in range(3):
            await _wait_failed(await app.enqueue("missing.task"))
    assert await app.queue().purge() == 3
    assert await app.queue().dead_letters() == []


def test_the_cli_lists_replays_and_purges_dead_letters(server: RedisServer, namespace: str) -> None:
    env = {
        **os.environ,
        "AQUEUE_URL": server.url,
        "AQUEUE_TEST_NAMESPACE": namespace,
        "PYTHONPATH": ROOT,
    }
    keys = Keys(namespace, "default")
    dead = {
        b"reason": b"no task named 'x'",
        b"dead_at": b"1700000000000",
        b"j": b"default:ab",
        b"t": b"x",
        b"p": b"[[],{}]",
        b"r": b"60",
    }
    with SyncRedis.from_url(server.url) as client:
        client.xadd(keys.dead, dead)
        client.xadd(keys.dead, dead)

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "aqueue", "dead-letters", *args, "tests.cli_app:app"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listing = cli("ls").splitlines()
    assert listing[0].split() == ["dead", "at", "(UTC)", "task", "job", "reason"]
    assert listing[1].endswith("x     default:ab  no task named 'x'")
    assert cli("replay") == "replayed 2 job(s) into default\n"
    with SyncRedis.from_url(server.url) as client:
        assert client.xlen(keys.stream) == 2
        client.xadd(keys.dead, dead)
    assert cli("purge", "--yes") == "deleted 1 dead letter(s) from default\n"
    assert cli("ls") == "no dead letters\n"


async def _wait_failed(job: aqueue.Job[object]) -> None:
    try:
        await job.result(timeout=10)
    except aqueue.TaskFailed:
        return
    raise AssertionError(f"{job} did not fail")


async def test_letters_that_cannot_be_replayed_do_not_block_the_ones_behind(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    for _ in range(150):  # more than one scan's worth of letters without a job
        await redis.xadd(keys.dead, {b"reason": b"entry deleted from the stream unfinished"})
    await redis.xadd(
        keys.dead, {b"reason": b"x", b"j": b"default:ab", b"t": b"t", b"p": b"[[],{}]"}
    )
    assert await app.queue().replay_dead() == 1
    assert await redis.xlen(keys.stream) == 1
    assert await redis.xlen(keys.dead) == 150
