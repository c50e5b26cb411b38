"""What the API promises: any handle on a job reads its outcome alike, a replay is the one
way out of a final status, and what cannot be done is refused with a clear error."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

import aqueue
from tests.helpers import eventually, has_status
from tests.internals import Keys, translate_errors


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
        assert await app.queue().replay_dead_letters() == 1
        assert await job.result(timeout=5) == "second time"


async def test_a_job_cancelled_after_its_dead_letter_is_not_replayed(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="gone.task")
    async def gone() -> None:
        pass

    job = await gone.enqueue()
    # A worker without the task, while no worker that knows it runs.
    old = aqueue.App(app.url, namespace=app.namespace, unknown_task_grace=0)
    keys = Keys(app.namespace, "default")
    async with old, aqueue.Worker(old):

        async def dead() -> bool:
            return await redis.xlen(keys.dead) == 1

        await eventually(dead, timeout=10)
    await redis.hset(keys.job(job.id), "status", "cancelled")
    assert await app.queue().replay_dead_letters() == 0
    assert await job.status() is aqueue.JobStatus.CANCELLED
    assert await redis.xlen(keys.dead) == 1


async def test_a_value_redis_py_refuses_to_send_is_not_called_a_server_refusal(
    app: aqueue.App, redis: Redis
) -> None:
    refused = pytest.raises(aqueue.ConfigurationError, match="nothing was sent")
    with refused as caught, translate_errors(app.url):
        await redis.set("key", None)  # type: ignore[arg-type]
    assert "refused a command" not in str(caught.value)


def test_key_ttl_without_a_key_is_refused(app: aqueue.App) -> None:
    @app.task
    async def once() -> None:
        pass

    with pytest.raises(aqueue.ConfigurationError, match=r"options\(key=..., key_ttl=...\)"):
        once.options(key_ttl=60)


def test_key_ttl_with_a_key_set_earlier_is_taken(app: aqueue.App) -> None:
    @app.task
    async def once() -> None:
        pass

    assert once.options(key="k").options(key_ttl=60)._config.key_ttl == 60


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
async def test_a_non_finite_number_is_refused_at_enqueue_naming_the_argument(
    app: aqueue.App, value: float
) -> None:
    @app.task
    async def measure(label: str, readings: list[float]) -> None:
        pass

    with pytest.raises(aqueue.SerializationError, match="argument 'readings'"):
        await measure.enqueue("a", readings=[1.0, value])
    with pytest.raises(aqueue.SerializationError, match="positional argument 1"):
        await measure.enqueue("a", [value])


async def test_none_and_finite_numbers_still_encode(app: aqueue.App) -> None:
    @app.task
    async def measure(readings: list[float | None]) -> None:
        pass

    await measure.enqueue([None, 1.5, 1e308])


async def test_a_fire_and_forget_job_cancelled_before_a_worker_started_never_runs(
    app: aqueue.App,
) -> None:
    runs: list[str] = []

    @app.task
    async def note(what: str) -> None:
        runs.append(what)

    forgotten = await note.options(result_ttl=0).enqueue("cancelled")
    assert await forgotten.cancel() is True
    after = await note.enqueue("after")
    async with aqueue.Worker(app, concurrency=1):
        await after.result(timeout=10)
    assert runs == ["after"]


async def test_a_fire_and_forget_job_cancelled_while_queued_never_runs(app: aqueue.App) -> None:
    runs: list[str] = []
    release = asyncio.Event()

    @app.task
    async def note(what: str) -> None:
        if what == "busy":
            await release.wait()
        runs.append(what)

    async with aqueue.Worker(app, concurrency=1):
        busy = await note.enqueue("busy")
        await eventually(lambda: has_status(busy, aqueue.JobStatus.RUNNING))
        forgotten = await note.options(result_ttl=0).enqueue("cancelled")
        assert await forgotten.cancel() is True
        await asyncio.sleep(0.2)  # the worker hears of it (it looks every 50 ms)
        release.set()
        after = await note.enqueue("after")
        await after.result(timeout=10)
    assert runs == ["busy", "after"]


async def test_a_task_returning_nan_fails_instead_of_returning_none(app: aqueue.App) -> None:
    @app.task
    async def ratio() -> float:
        return float("nan")

    async with aqueue.Worker(app):
        job = await ratio.enqueue()
        with pytest.raises(aqueue.TaskFailed, match="NaN and infinities have no JSON form"):
            await job.result(timeout=10)
