"""Jobs from the producer's side: status, info, and waiting for results."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

import aqueue
from tests.helpers import entries
from tests.internals import Keys, connections_of


async def test_result_returns_the_value_the_task_returned(app: aqueue.App) -> None:
    @app.task
    async def greet(name: str) -> dict[str, str]:
        return {"hello": name}

    async with aqueue.Worker(app):
        job = await greet.enqueue("world")
        assert await job.result(timeout=5) == {"hello": "world"}
        assert await job.status() is aqueue.JobStatus.SUCCEEDED


async def test_the_result_is_kept_for_the_result_ttl(app: aqueue.App, redis: Redis) -> None:
    @app.task(result_ttl=120)
    async def work() -> int:
        return 1

    async with aqueue.Worker(app):
        job = await work.enqueue()
        await job.result(timeout=5)
    assert 100 < await redis.ttl(Keys(app.namespace, "default").job(job.id)) <= 120


async def test_a_failed_task_raises_task_failed_with_the_remote_error(app: aqueue.App) -> None:
    @app.task
    async def divide(x: int, y: int) -> float:
        return x / y

    async with aqueue.Worker(app):
        job = await divide.enqueue(1, 0)
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert failure.value.type == "builtins.ZeroDivisionError"
    assert failure.value.message == "division by zero"
    assert "return x / y" in failure.value.traceback
    assert (await job.info()).error == aqueue.RemoteError(
        "builtins.ZeroDivisionError", "division by zero", failure.value.traceback
    )


async def test_an_error_message_that_utf8_cannot_carry_is_recorded_escaped(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(dead_letter_failures=True)
    async def reads_a_file() -> None:
        # A file name decoded with surrogateescape holds a lone surrogate.
        name = b"caf\xe9.txt".decode(errors="surrogateescape")
        raise FileNotFoundError(f"no such file: {name}")

    async with aqueue.Worker(app):
        job = await reads_a_file.enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert failure.value.message == "no such file: caf\\udce9.txt"
    [(_, dead)] = await entries(redis, Keys(app.namespace, "default").dead)
    assert dead[b"reason"].endswith(b"no such file: caf\\udce9.txt")
    assert await redis.xlen(Keys(app.namespace, "default").stream) == 0


async def test_a_task_past_its_timeout_fails_with_task_timeout(app: aqueue.App) -> None:
    @app.task(timeout=0.1)
    async def slow() -> None:
        await asyncio.sleep(10)

    async with aqueue.Worker(app):
        job = await slow.enqueue()
        with pytest.raises(
            aqueue.TaskTimeout, match=r"longer than its timeout of 0\.1 s"
        ) as lapsed:
            await job.result(timeout=5)
    # Said once: the stored message is the reason, not another "job ... failed with".
    assert lapsed.value.message == "task ran longer than its timeout of 0.1 s"
    assert str(lapsed.value).count("failed with") == 1


async def test_a_timeout_error_raised_by_the_task_itself_is_an_ordinary_failure(
    app: aqueue.App,
) -> None:
    @app.task(timeout=10)
    async def calls_out() -> None:
        raise TimeoutError("upstream did not answer")

    async with aqueue.Worker(app):
        job = await calls_out.enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert type(failure.value) is aqueue.TaskFailed
    assert failure.value.type == "builtins.TimeoutError"


async def test_waiting_longer_than_the_timeout_raises_result_timeout(app: aqueue.App) -> None:
    @app.task
    async def work() -> None: ...

    job = await work.enqueue()  # no worker runs
    with pytest.raises(aqueue.ResultTimeout, match=r"did not finish within 0\.2 s"):
        await job.result(timeout=0.2)
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_result_timeout_of_a_job_still_queued_asks_whether_a_worker_serves_its_queue(
    app: aqueue.App,
) -> None:
    @app.task(queue="emails")
    async def send() -> None: ...

    job = await send.enqueue()  # no worker runs
    with pytest.raises(aqueue.ResultTimeout, match=r"Is a worker serving queue 'emails'\?"):
        await job.result(timeout=0.05)


async def test_a_result_timeout_of_a_job_on_a_misspelt_queue_names_the_queue_meant(
    app: aqueue.App,
) -> None:
    @app.task(queue="emails")
    async def send() -> None: ...

    job = await send.options(queue="emials").enqueue()
    with pytest.raises(
        aqueue.ResultTimeout, match=r"names no queue 'emials': did you mean 'emails'"
    ):
        await job.result(timeout=0.05)


async def test_a_job_nobody_enqueued_is_unknown(app: aqueue.App) -> None:
    job = app.job("default:0123456789abcdef0123456789abcdef")
    assert await job.status() is aqueue.JobStatus.UNKNOWN
    assert (await job.info()).status is aqueue.JobStatus.UNKNOWN
    with pytest.raises(aqueue.JobNotFound, match="no record of job"):
        await job.result(timeout=1)


async def test_a_job_is_never_seen_without_a_status_while_it_starts(app: aqueue.App) -> None:
    # Its status moves from the queue's shared hash into its own record as it starts.
    @app.task
    async def noop() -> None: ...

    jobs = await noop.enqueue_many([() for _ in range(300)])
    seen: set[aqueue.JobStatus] = set()
    async with aqueue.Worker(app, concurrency=50):
        while not seen or any(not s.is_final for s in seen):
            seen = set(await asyncio.gather(*(job.status() for job in jobs)))
            assert aqueue.JobStatus.UNKNOWN not in seen
    assert seen == {aqueue.JobStatus.SUCCEEDED}


def test_an_id_not_made_by_aqueue_is_refused(app: aqueue.App) -> None:
    with pytest.raises(aqueue.JobNotFound, match="not an aqueue job id"):
        app.job("42")


async def test_a_handle_made_from_an_id_sees_the_same_job(app: aqueue.App) -> None:
    @app.task
    async def work() -> str:
        return "done"

    async with aqueue.Worker(app):
        job = await work.enqueue()
        same = app.job(job.id)
        assert same == job
        assert await same.result(timeout=5) == "done"


async def test_many_waiters_on_many_jobs_all_get_their_own_result(app: aqueue.App) -> None:
    @app.task
    async def echo(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    async with aqueue.Worker(app, concurrency=50):
        jobs = await echo.enqueue_many([(i,) for i in range(200)])
        waits = [job.result(timeout=10) for job in jobs for _ in range(2)]
        results = await asyncio.gather(*waits)
    assert results == [i for i in range(200) for _ in range(2)]


async def test_info_shows_attempts_timestamps_worker_and_progress(app: aqueue.App) -> None:
    @app.task
    async def report() -> None:
        await aqueue.current_job().progress(0.5, "halfway")

    async with aqueue.Worker(app, name="w-info") as worker:
        job = await report.enqueue()
        await job.result(timeout=5)
    info = await job.info()
    assert (info.status, info.task, info.attempts, info.worker) == (
        aqueue.JobStatus.SUCCEEDED,
        report.name,
        1,
        worker.name,
    )
    assert (info.progress, info.progress_message) == (0.5, "halfway")
    assert info.result is None  # the task returned None
    assert info.enqueued_at is not None
    assert info.started_at is not None
    assert info.finished_at is not None
    assert info.enqueued_at <= info.started_at <= info.finished_at


async def test_a_result_that_cannot_be_encoded_fails_the_job(app: aqueue.App) -> None:
    @app.task
    async def weird() -> object:
        return object()

    async with aqueue.Worker(app):
        job = await weird.enqueue()
        with pytest.raises(aqueue.TaskFailed, match="cannot be encoded"):
            await job.result(timeout=5)


async def test_a_sync_task_past_its_timeout_fails_and_frees_its_slot(app: aqueue.App) -> None:
    @app.task(timeout=0.2)
    def stuck() -> None:
        time.sleep(1)  # the thread cannot be interrupted; the worker stops waiting for it

    @app.task
    async def next_in_line() -> str:
        return "ran"

    async with aqueue.Worker(app, concurrency=1):
        job = await stuck.enqueue()
        with pytest.raises(aqueue.TaskTimeout):
            await job.result(timeout=5)
        assert await (await next_in_line.enqueue()).result(timeout=0.7) == "ran"


async def test_info_carries_the_result_once_the_job_succeeded(app: aqueue.App) -> None:
    @app.task
    async def answer() -> dict[str, int]:
        return {"answer": 42}

    job = await answer.enqueue()
    assert (await job.info()).result is None
    async with aqueue.Worker(app):
        await job.result(timeout=5)
    assert (await job.info()).result == {"answer": 42}


async def test_a_result_awaited_again_at_once_through_another_handle_arrives(
    app: aqueue.App,
) -> None:
    """The answer to the first wait's unsubscribe must not end the second's subscription."""

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with aqueue.Worker(app):
        job = await add.enqueue(2, 3)
        assert await job.result(timeout=5) == 5
        for _ in range(3):
            assert await app.job(job.id).result(timeout=5) == 5


async def test_a_result_waiter_is_woken_by_final_statuses_only(
    app: aqueue.App, redis: Redis
) -> None:
    """Progress and "running" messages do not make result() read the record again."""
    channel = b"%s:channel" % app.namespace.encode()
    final = frozenset({b"succeeded"})
    async with (
        connections_of(app).result_waiter.watch(channel, 5, only=final) as woken,
        connections_of(app).result_waiter.watch(channel, 5) as every,
    ):
        await redis.spublish(channel, b"running")
        await asyncio.wait_for(every.wait(), 5)
        assert not woken.is_set()
        await redis.spublish(channel, b"succeeded")
        await asyncio.wait_for(woken.wait(), 5)


async def test_a_record_key_overwritten_by_another_program_raises_server_error(
    app: aqueue.App, redis: Redis
) -> None:
    job = app.job("default:" + "0" * 32)
    await redis.set(Keys(app.namespace, "default").job(job.id), "not a hash")
    with pytest.raises(aqueue.ServerError, match="WRONGTYPE"):
        await job.status()
    with pytest.raises(aqueue.ServerError, match="WRONGTYPE"):
        await job.result(timeout=1)
