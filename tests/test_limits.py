"""Cluster-wide limits: rate limits and concurrency limits shared by every worker of an app."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, has_status, read_as
from tests.internals import GROUP, Keys, Limits, connections_of, scripts


@pytest.mark.one_loop  # the limit is kept in the server, for five seconds of starts
async def test_a_rate_limit_is_held_within_ten_percent_by_three_workers(
    server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=3)
    starts: list[float] = []
    workers: set[str] = set()

    @app.task(rate_limit="20/s", result_ttl=0)
    async def tick() -> None:
        starts.append(time.monotonic())
        workers.add(aqueue.current_job().worker)

    async def five_seconds_passed() -> bool:
        return bool(starts) and time.monotonic() - starts[0] >= 5.0

    async with app:
        await tick.enqueue_many([() for _ in range(150)])
        async with (
            aqueue.Worker(app, concurrency=10, name="a"),
            aqueue.Worker(app, concurrency=10, name="b"),
            aqueue.Worker(app, concurrency=10, name="c"),
        ):
            await eventually(five_seconds_passed, timeout=8)
    in_five_seconds = [t for t in starts if t - starts[0] < 5.0]
    assert 90 <= len(in_five_seconds) <= 110
    assert len(workers) > 1


async def test_jobs_held_back_by_a_rate_limit_are_scheduled_each_at_its_own_time(
    app: aqueue.App,
) -> None:
    @app.task(rate_limit="60/m")
    async def call_api() -> None: ...

    first, *others = await call_api.enqueue_many([() for _ in range(4)])
    async with aqueue.Worker(app):
        await first.result(timeout=5)

        async def all_scheduled() -> bool:
            statuses = [await job.status() for job in others]
            return statuses == [aqueue.JobStatus.SCHEDULED] * 3

        await eventually(all_scheduled)
        infos = [await job.info() for job in others]
    due = sorted(info.due_at.timestamp() for info in infos if info.due_at is not None)
    assert len(due) == 3
    # One job a second: no two held-back jobs come back at the same time.
    assert [round(b - a, 1) for a, b in itertools.pairwise(due)] == [1.0, 1.0]
    assert [info.attempts for info in infos] == [0, 0, 0]  # waiting is not an attempt


async def test_a_job_held_back_by_a_limit_moves_its_status_into_its_record(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(rate_limit="60/m")
    async def call_api() -> None: ...

    first, second = await call_api.enqueue_many([(), ()])
    keys = Keys(app.namespace, "default")
    async with aqueue.Worker(app):
        await first.result(timeout=5)
        await eventually(lambda: has_status(second, aqueue.JobStatus.SCHEDULED))
        assert not await redis.hexists(keys.queued(second.id), second.id.partition(":")[2])
        assert (await second.info()).task == call_api.name
        assert await redis.ttl(keys.job(second.id)) > 3600


class _Peak:
    """A task body that counts how many of its runs overlap at most."""

    def __init__(self) -> None:
        self.running = self.peak = 0

    async def run(self, n: int) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        return n


async def test_a_parked_job_woken_by_a_freed_slot_reads_queued_while_it_waits_to_start(
    server: RedisServer, namespace: str
) -> None:
    """A slot's release makes the job parked longest due at once, long before the due time
    its record gives (a lease after its parking); moved into its stream, it is queued."""
    app = aqueue.App(server.url, namespace=namespace, lease=30)
    release = asyncio.Event()

    @app.task(max_concurrency=1)
    async def scarce() -> None:
        await release.wait()

    holder = await scarce.enqueue()
    async with app, aqueue.Worker(app, concurrency=4):
        await eventually(lambda: has_status(holder, aqueue.JobStatus.RUNNING))
        parked = await scarce.enqueue()
        await eventually(lambda: has_status(parked, aqueue.JobStatus.SCHEDULED))
        await app.queue().pause()  # so that, once moved, it waits in the stream
        release.set()
        await holder.result(timeout=5)
        await eventually(lambda: has_status(parked, aqueue.JobStatus.QUEUED), timeout=2)
        assert (await parked.info()).due_at is None
        await app.queue().resume()
        await parked.result(timeout=5)


async def test_max_concurrency_is_never_exceeded_by_three_workers(
    server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=3)
    counter = _Peak()
    scarce = app.task(max_concurrency=2, name="scarce")(counter.run)

    async with app:
        jobs = await scarce.enqueue_many([(n,) for n in range(20)])
        async with (
            aqueue.Worker(app, concurrency=10),
            aqueue.Worker(app, concurrency=10),
            aqueue.Worker(app, concurrency=10),
        ):
            results = [await job.result(timeout=10) for job in jobs]
    assert results == list(range(20))
    assert counter.peak == 2


async def test_max_concurrency_holds_across_priority_levels(app: aqueue.App) -> None:
    counter = _Peak()
    scarce = app.task(max_concurrency=1, name="scarce")(counter.run)

    jobs = [await scarce.options(priority=level).enqueue(level) for level in (1, 5, 9) * 3]
    async with aqueue.Worker(app, concurrency=10), aqueue.Worker(app, concurrency=10):
        results = [await job.result(timeout=10) for job in jobs]
    assert results == [1, 5, 9] * 3
    assert counter.peak == 1


async def test_a_dead_workers_concurrency_slot_comes_back_after_the_lease(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=1)

    @app.task(max_concurrency=1)
    async def scarce(n: int) -> int:
        return n

    keys = Keys(namespace, "default")
    limits = Limits(scarce.name, keys, None, 1)
    async with app:
        ghosts_job = await scarce.enqueue(1)
        # A worker takes the job, acquires its slot, and dies (it never renews nor releases).
        [entry_id] = await read_as(redis, keys, "ghost")
        assert await _start_as(app, "ghost", limits, ghosts_job.id, entry_id) == 1
        died = time.monotonic()
        job = await scarce.enqueue(2)
        async with aqueue.Worker(app):
            assert await job.result(timeout=10) == 2
            waited = time.monotonic() - died
            assert await ghosts_job.result(timeout=10) == 1  # claimed and run again
    assert waited <= 1.0 + 1.0 + 1.0  # the lease, one claim or promote pass, and slack
    assert await redis.zcard(limits.running) == 0


async def test_a_slot_whose_holder_was_not_renewed_for_a_lease_is_taken_over(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    limits = Limits("scarce", keys, None, 1)
    first, second, third = [await app.enqueue("scarce") for _ in range(3)]
    [first_entry, second_entry, third_entry] = await read_as(redis, keys, "ghost")
    assert await _start_as(app, "ghost", limits, first.id, first_entry) == 1
    assert await _start_as(app, "ghost", limits, third.id, third_entry) == b"parked"

    async def lapsed() -> bool:
        # Both the entry's idle time and its slot's last renewal (its start, a moment after
        # the read) must be a lease old.
        [pending] = await redis.xpending_range(keys.stream, GROUP, first_entry, first_entry, 1)
        renewed = await redis.zscore(limits.running, keys.stream + b" " + first_entry)
        seconds, micros = await redis.time()
        now_ms = seconds * 1000 + micros // 1000
        idle = int(pending["time_since_delivered"]) >= 1000
        return bool(idle and renewed is not None and renewed <= now_ms - 1000)

    # The ghost's entry is idle past a lease of 1 s: it stopped renewing (it died).
    await eventually(lapsed)
    assert await _start_as(app, "ghost", limits, second.id, second_entry, lease_ms=1000) == 1
    assert await redis.zrange(limits.running, 0, -1) == [keys.stream + b" " + second_entry]


async def _start_as(
    app: aqueue.App,
    consumer: str,
    limits: Limits,
    job_id: str,
    entry_id: bytes,
    *,
    lease_ms: int = 1000,
) -> Any:
    """Run the start script with ``limits`` as ``consumer`` would (without running the job)."""
    keys = limits.keys
    call = scripts.start(
        stream=keys.stream,
        events=keys.events,
        delayed=keys.delayed,
        followed=keys.followed,
        paused=keys.paused,
        holder_streams=keys.streams,
        consumer=consumer,
        group=GROUP,
        events_limit=0,
        limits=limits.start_call(lease_ms),
        jobs=[
            scripts.StartedJob(
                record=keys.job(job_id),
                queued=keys.queued(job_id),
                entry_id=entry_id,
                max_attempts=5,
                keeps_record=True,
                prior_attempts=0,
                expires_at=0,
                record_ttl=3600,
                task_name="",
                job_id=job_id,
            )
        ],
    )
    [reply] = await connections_of(app).direct.call(call)
    return reply


async def test_jobs_held_back_by_a_limit_do_not_block_other_tasks_on_the_worker(
    app: aqueue.App,
) -> None:
    gate = asyncio.Event()

    @app.task(max_concurrency=1)
    async def scarce() -> None:
        await gate.wait()

    @app.task
    async def free() -> str:
        return "ran"

    held = await scarce.enqueue_many([() for _ in range(10)])
    async with aqueue.Worker(app, concurrency=2) as worker:

        async def nine_held_back() -> bool:
            return worker.held_back >= 9

        await eventually(nine_held_back)
        assert await (await free.enqueue()).result(timeout=2) == "ran"
        gate.set()
        for job in held:
            await job.result(timeout=10)


async def test_jobs_waiting_for_a_slot_longer_than_a_lease_stay_in_line_once(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=0.5)
    gate = asyncio.Event()

    @app.task(max_concurrency=1)
    async def scarce() -> None:
        await gate.wait()

    limits = Limits(scarce.name, Keys(namespace, "default"), None, 1)
    async with app:
        jobs = await scarce.enqueue_many([() for _ in range(4)])
        async with aqueue.Worker(app) as worker:

            async def parked_twice() -> bool:
                return worker.held_back >= 6  # three jobs, each back after a lease at least once

            await eventually(parked_twice)
            assert await redis.zcard(limits.parked) == 3
            gate.set()
            for job in jobs:
                await job.result(timeout=10)
    assert await redis.exists(limits.parked, limits.running) == 0


@pytest.mark.parametrize("outcome", ["failure", "timeout", "retry"])
async def test_a_job_that_ends_any_way_frees_its_slot(
    app: aqueue.App, redis: Redis, outcome: str
) -> None:
    tries = 0

    @app.task(max_concurrency=1, timeout=0.1, retries=1, backoff=aqueue.backoff.fixed(0))
    async def scarce() -> None:
        nonlocal tries
        tries += 1
        if outcome == "timeout":
            await asyncio.sleep(1)
        if outcome == "failure" or (outcome == "retry" and tries % 2 == 1):
            raise ValueError("boom")

    jobs = await scarce.enqueue_many([() for _ in range(3)])
    began = time.monotonic()
    async with aqueue.Worker(app):
        for job in jobs:
            await _ended(job)
    # Far less than the lease (3 s) each job would wait for a slot that was not released.
    assert time.monotonic() - began < 3.0
    limits = Limits(scarce.name, Keys(app.namespace, "default"), None, 1)
    assert await redis.zcard(limits.running) == 0


async def test_a_job_handed_back_at_shutdown_frees_its_slot(app: aqueue.App, redis: Redis) -> None:
    @app.task(max_concurrency=1)
    async def scarce() -> None:
        await asyncio.sleep(30)

    job = await scarce.enqueue()
    async with aqueue.Worker(app, grace_period=0):

        async def running() -> bool:
            return await job.status() is aqueue.JobStatus.RUNNING

        await eventually(running)
    limits = Limits(scarce.name, Keys(app.namespace, "default"), None, 1)
    assert await redis.zcard(limits.running) == 0
    assert await job.status() is aqueue.JobStatus.QUEUED


async def _ended(job: aqueue.Job[Any]) -> None:
    with contextlib.suppress(aqueue.TaskFailed):
        await job.result(timeout=5)


@pytest.mark.parametrize(
    ("given", "per_second"),
    [("100/s", 100.0), ("30/m", 0.5), ("36/h", 0.01), (" 2.5 / s ", 2.5), (5, 5.0), (0.5, 0.5)],
)
def test_rate_limits_are_read_per_second_minute_or_hour(given: Any, per_second: float) -> None:
    app = aqueue.App()

    @app.task(rate_limit=given)
    async def limited() -> None: ...

    rate = limited._config.rate_limit
    assert rate is not None
    assert rate.count / rate.period == pytest.approx(per_second)


@pytest.mark.parametrize(
    "given", ["100", "10/d", "0/s", "-1/s", "fast", "1/s/s", True, 0, -2, float("nan"), 1e999]
)
def test_a_bad_rate_limit_is_refused_at_registration(given: Any) -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="rate_limit"):
        app.task(rate_limit=given)


@pytest.mark.parametrize("given", [0, -1, 1.5, "5", True])
def test_a_bad_max_concurrency_is_refused_at_registration(given: Any) -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="max_concurrency"):
        app.task(max_concurrency=given)
