"""What a handle and a replay promise: any handle on a job reads its outcome alike, and a
replay is the one way out of a final status."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue._redis._keys import Keys
from tests.helpers import eventually


async def test_a_handle_from_a_groups_id_gives_failed_members_as_task_failed(
    app: aqueue.App,
) -> None:
    @app.task
    async def ok(value: int) -> int:
        return value

    @app.task
    async def refuse(value: int) -> int:
        raise LookupError(f"no {value}")

    async with aqueue.Worker(app):
        job = await aqueue.group([ok.s(1), refuse.s(7)], return_exceptions=True).enqueue()
        own = await job.result(timeout=5)
    first, failed = await app.job(job.id).result(timeout=5)
    assert first == 1
    assert isinstance(failed, aqueue.TaskFailed)
    assert (failed.type, failed.message) == ("builtins.LookupError", "no 7")
    assert [type(value) for value in own] == [int, aqueue.TaskFailed]
    info = await app.job(job.id).info()
    assert isinstance(info.result[1], aqueue.TaskFailed)


async def test_a_list_result_of_a_task_is_returned_as_it_is(app: aqueue.App) -> None:
    @app.task
    async def marks() -> list[dict[str, object]]:
        return [{"__aqueue_error__": {"type": "mine"}}]

    async with aqueue.Worker(app):
        job = await marks.enqueue()
        assert await app.job(job.id).result(timeout=5) == [{"__aqueue_error__": {"type": "mine"}}]


async def test_a_replayed_failed_job_is_queued_again_and_runs(app: aqueue.App) -> None:
    calls: list[int] = []

    @app.task(dead_letter_failures=True)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return "second time"

    async with aqueue.Worker(app):
        job = await flaky.enqueue()
        with pytest.raises(aqueue.TaskFailed):
            await job.result(timeout=5)
        assert await app.queue().replay_dead() == 1
        assert await job.result(timeout=5) == "second time"


async def test_a_job_cancelled_after_its_dead_letter_is_not_replayed(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="gone.task")
    async def gone() -> None:
        pass

    job = await gone.enqueue()
    old = aqueue.App(app.url, namespace=app.namespace)  # a worker without the task
    keys = Keys(app.namespace, "default")
    async with old, aqueue.Worker(old):

        async def dead() -> bool:
            return await redis.xlen(keys.dead) == 1

        await eventually(dead, timeout=10)
    await redis.hset(keys.job(job.id), "status", "cancelled")
    assert await app.queue().replay_dead() == 0
    assert await job.status() is aqueue.JobStatus.CANCELLED
    assert await redis.xlen(keys.dead) == 1
