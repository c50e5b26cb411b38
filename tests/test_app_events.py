"""The app's event stream: ``app.events()`` tells what happened to every job, as it happens."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue._redis._keys import keys_of
from aqueue.testing import RedisServer
from tests.helpers import eventually
from tests.test_cli import ROOT, cli_env


@pytest.fixture
async def app(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(server.url, namespace=namespace, lease=3, events=True) as the_app:
        yield the_app


async def collect(
    app: aqueue.App, count: int, *, after: str | None = "0-0", queues: list[str] | None = None
) -> list[aqueue.Event]:
    """The first ``count`` events (from the start of the streams by default)."""
    found: list[aqueue.Event] = []
    async with asyncio.timeout(10):
        async for event in app.events(after=after, queues=queues):
            found.append(event)
            if len(found) == count:
                break
    return found


def kinds(events: list[aqueue.Event]) -> list[str]:
    return [event.type for event in events]


async def test_a_jobs_enqueue_start_and_success_are_told_with_its_task_queue_and_worker(
    app: aqueue.App,
) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    job = await add.enqueue(1, 2)
    async with aqueue.Worker(app, name="w1"):
        await job.result(timeout=5)

    events = await collect(app, 3)
    assert kinds(events) == ["enqueued", "started", "succeeded"]
    assert {event.job_id for event in events} == {job.id}
    assert {event.task for event in events} == {add.name}
    assert {event.queue for event in events} == {"default"}
    assert [event.worker for event in events] == [None, "w1", "w1"]
    now = datetime.now(UTC)
    assert all(now - timedelta(seconds=10) < event.at <= now for event in events)


async def test_a_retried_then_failed_job_tells_each_attempt(app: aqueue.App) -> None:
    @app.task(retries=1, backoff=aqueue.backoff.fixed(0))
    async def flaky() -> None:
        raise ValueError("no luck")

    job = await flaky.enqueue()
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await job.result(timeout=5)

    events = await collect(app, 5)
    assert kinds(events) == ["enqueued", "started", "retried", "started", "failed"]


async def test_a_cancelled_job_is_told_cancelled(app: aqueue.App) -> None:
    @app.task
    async def later() -> None: ...

    job = await later.enqueue()
    assert await job.cancel()

    events = await collect(app, 2)
    assert kinds(events) == ["enqueued", "cancelled"]
    assert events[1].job_id == job.id
    assert events[1].task == later.name


async def test_a_job_of_an_unknown_task_is_told_dead_lettered(
    app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace, events=True) as producer:
        job = await producer.enqueue("nobody.knows", 1)
    async with aqueue.Worker(app):
        await eventually(lambda: _dead(app))

    events = await collect(app, 3)
    assert kinds(events) == ["enqueued", "started", "dead-lettered"]
    assert events[2].job_id == job.id


async def test_a_job_waiting_for_another_is_told_enqueued_then_runs_once_released(
    app: aqueue.App,
) -> None:
    @app.task
    async def first() -> None: ...

    @app.task
    async def second() -> None: ...

    before = await first.enqueue()
    waiting = await second.options(after=[before]).enqueue()
    async with aqueue.Worker(app, concurrency=1):
        await waiting.result(timeout=5)

    events = [event for event in await collect(app, 6) if event.job_id == waiting.id]
    assert kinds(events) == ["enqueued", "started", "succeeded"]
    assert {event.task for event in events} == {second.name}


async def test_a_job_whose_dependency_failed_is_told_failed_without_a_start(
    app: aqueue.App,
) -> None:
    @app.task
    async def breaks() -> None:
        raise ValueError("no")

    @app.task
    async def never() -> None: ...

    before = await breaks.enqueue()
    waiting = await never.options(after=[before]).enqueue()
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await waiting.result(timeout=5)

    events = [event for event in await collect(app, 5) if event.job_id == waiting.id]
    assert kinds(events) == ["enqueued", "failed"]
    assert events[1].task == never.name


async def test_a_chain_tells_the_end_of_its_own_job_as_well_as_of_its_steps(
    app: aqueue.App,
) -> None:
    @app.task
    async def step(previous: int = 0) -> int:
        return previous + 1

    chain = await (step.s() | step.s()).enqueue()
    async with aqueue.Worker(app):
        await chain.result(timeout=5)

    # Two steps (enqueued, started, succeeded) and the chain's own job (enqueued, succeeded).
    events = [event for event in await collect(app, 8) if event.job_id == chain.id]
    assert kinds(events) == ["enqueued", "succeeded"]
    assert events[0].task == "aqueue.chain"


async def test_a_replayed_dead_letter_is_told_enqueued_again(app: aqueue.App) -> None:
    async with aqueue.Worker(app):
        job = await app.enqueue("not.deployed")
        await eventually(lambda: _dead(app))
    assert await app.queue().replay_dead() == 1

    events = await collect(app, 4)
    assert kinds(events) == ["enqueued", "started", "dead-lettered", "enqueued"]
    assert (events[3].job_id, events[3].task) == (job.id, "not.deployed")


async def test_a_fire_and_forget_job_cancelled_through_its_handle_is_told_cancelled(
    app: aqueue.App,
) -> None:
    @app.task(result_ttl=0)
    async def forgotten() -> None: ...

    job = await forgotten.enqueue()
    assert await job.cancel()

    events = await collect(app, 2)
    assert kinds(events) == ["enqueued", "cancelled"]
    assert (events[1].job_id, events[1].task) == (job.id, forgotten.name)


async def test_a_fire_and_forget_job_is_told_started_and_succeeded(app: aqueue.App) -> None:
    done = asyncio.Event()

    @app.task(result_ttl=0)
    async def forgotten() -> None:
        done.set()

    job = await forgotten.enqueue()
    async with aqueue.Worker(app, name="w1"):
        await asyncio.wait_for(done.wait(), 5)

    events = await collect(app, 3)
    assert kinds(events) == ["enqueued", "started", "succeeded"]
    assert {event.job_id for event in events} == {job.id}
    assert events[1].worker == "w1"


async def test_purged_jobs_are_told_cancelled(app: aqueue.App) -> None:
    @app.task
    async def kept() -> None: ...

    @app.task(result_ttl=0)
    async def forgotten() -> None: ...

    jobs = [await kept.enqueue(), await forgotten.enqueue()]
    assert await app.queue().purge_queued() == 2

    events = await collect(app, 4)
    assert kinds(events) == ["enqueued", "enqueued", "cancelled", "cancelled"]
    assert [event.job_id for event in events[2:]] == [job.id for job in jobs]
    assert [event.task for event in events[2:]] == [kept.name, forgotten.name]


@pytest.fixture
def worker_process(server: RedisServer, namespace: str) -> Iterator[subprocess.Popen[bytes]]:
    """An ``aqueue worker`` process of the CLI's app, with events on (``AQUEUE_EVENTS``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aqueue", "worker", "tests.cli_app:app"],
        env=cli_env(server, namespace, AQUEUE_EVENTS="1"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield process
    process.terminate()
    process.wait(15)


async def test_a_worker_process_tells_the_run_of_a_job_released_from_its_wait(
    app: aqueue.App, worker_process: subprocess.Popen[bytes]
) -> None:
    @app.task(name="tests.cli_app.add")
    async def add(x: int, y: int) -> int:
        return x + y

    first = await add.enqueue(1, 2)
    second = await add.options(after=[first]).enqueue(3, 4)
    assert await second.result(timeout=20) == 7

    events = [event for event in await collect(app, 6) if event.job_id == second.id]
    assert kinds(events) == ["enqueued", "started", "succeeded"]
    assert f"-{worker_process.pid}-" in (events[1].worker or "")


async def test_events_start_from_now_by_default(app: aqueue.App) -> None:
    @app.task
    async def ping(n: int) -> None: ...

    await ping.enqueue(1)
    reader = asyncio.create_task(collect(app, 1, after=None))
    # The reader takes "now" on its first step: enqueue only once it has read once.
    await asyncio.sleep(0.3)
    second = await ping.enqueue(2)

    (event,) = await reader
    assert event.job_id == second.id


async def test_reading_after_an_event_id_goes_on_from_that_event(app: aqueue.App) -> None:
    @app.task
    async def ping() -> None: ...

    first, second = await ping.enqueue(), await ping.enqueue()
    (seen,) = await collect(app, 1)
    assert seen.job_id == first.id

    (then,) = await collect(app, 1, after=seen.id)
    assert then.job_id == second.id


async def test_events_of_several_queues_are_merged(app: aqueue.App) -> None:
    @app.task(queue="mail")
    async def send() -> None: ...

    @app.task(queue="bills")
    async def bill() -> None: ...

    await send.enqueue()
    await bill.enqueue()
    events = await collect(app, 2)
    assert sorted(event.queue for event in events) == ["bills", "mail"]


async def test_an_app_without_events_writes_none(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    async with aqueue.App(server.url, namespace=namespace) as quiet:

        @quiet.task
        async def ping() -> None: ...

        @quiet.task(result_ttl=0)
        async def forgotten() -> None: ...

        job = await ping.enqueue()
        await ping.options(after=[job]).enqueue()
        await (await forgotten.enqueue()).cancel()
        async with aqueue.Worker(quiet):
            await job.result(timeout=5)
            await quiet.enqueue("not.deployed")
            await eventually(lambda: _dead(quiet))
        await quiet.queue().replay_dead()
        await quiet.queue().purge_queued()
    assert await redis.exists(keys_of(namespace, "default").events) == 0


async def test_the_event_stream_is_bounded(app: aqueue.App, redis: Redis, namespace: str) -> None:
    @app.task
    async def ping() -> None: ...

    app.events_limit = 100
    await ping.enqueue_many([() for _ in range(1000)])
    assert await redis.xlen(keys_of(namespace, "default").events) < 500


async def _dead(app: aqueue.App) -> bool:
    return (await app.queue().stats()).dead == 1
