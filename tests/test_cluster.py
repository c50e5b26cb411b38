"""aqueue on a real Redis Cluster: 3 masters and 3 replicas on loopback
(aqueue.testing.LocalCluster).

Queues are picked so that each lives on a different master: enqueue, run and results, a
worker reading all of them, cron, and workflows across queues.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.crc import key_slot

import aqueue
from aqueue.testing import LocalCluster, RedisServer
from tests.helpers import admin_client, eventually, has_status, read_as, tick_of
from tests.internals import CHANNELS, GROUP, Keys, send_command

pytestmark = pytest.mark.slow

ONE_LOOP = True
"""The cluster client is the same on every event loop."""


@pytest.fixture
async def app(cluster: LocalCluster, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(
        cluster.url, namespace=namespace, lease=3, unknown_task_grace=0
    ) as the_app:
        yield the_app


def spread_queues(cluster: LocalCluster, namespace: str) -> list[str]:
    """One queue name per master: each queue's keys live on a different shard."""
    found: dict[int, str] = {}
    for n in range(1000):
        queue = f"q{n}"
        master = cluster.master_of(Keys(namespace, queue).stream).port
        found.setdefault(master, queue)
        if len(found) == len(cluster.nodes) // 2:
            return list(found.values())
    raise AssertionError("no queue names found for every master")


async def results_of_jobs_on_every_master(app: aqueue.App, cluster: LocalCluster) -> list[str]:
    """Five jobs on a queue of each master, run by one worker: each result names its queue."""
    queues = spread_queues(cluster, app.namespace)
    assert len({key_slot(Keys(app.namespace, q).stream) for q in queues}) == 3

    @app.task
    async def where(n: int) -> str:
        return f"{aqueue.current_job().queue}:{n}"

    async with aqueue.Worker(app, queues=queues, concurrency=20):
        jobs = [
            job
            for queue in queues
            for job in await where.options(queue=queue).enqueue_many([(n,) for n in range(5)])
        ]
        results: list[str] = await asyncio.gather(*(job.result(timeout=10) for job in jobs))
    assert results == [f"{q}:{n}" for q in queues for n in range(5)]
    return results


async def test_jobs_on_queues_of_every_master_run_and_give_their_results(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    assert len(await results_of_jobs_on_every_master(app, cluster)) == 15


async def runs_of_a_job_outliving_its_lease(
    app: aqueue.App, cluster: LocalCluster, seconds: float
) -> int:
    """How often a job of ``seconds`` (longer than the app's lease) ran, with two workers that
    could each take it over were its lease not renewed."""
    runs = 0

    @app.task
    async def long() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(seconds)
        return "done"

    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues), aqueue.Worker(app, queues=queues):
        job = await long.options(queue=queues[1]).enqueue()
        assert await job.result(timeout=15) == "done"
    return runs


async def test_a_job_running_longer_than_its_lease_stays_with_its_worker(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """The lease thread renews through its own cluster client (lease 3 s, the job 4.5 s)."""
    assert await runs_of_a_job_outliving_its_lease(app, cluster, 4.5) == 1


async def test_periodic_tasks_fire_once_per_tick_on_a_cluster(app: aqueue.App) -> None:
    runs: list[float] = []

    @app.periodic(every=timedelta(seconds=0.3))
    async def heartbeat() -> None:
        runs.append(aqueue.current_job().enqueued_at.timestamp())

    async with aqueue.Worker(app), aqueue.Worker(app):
        await asyncio.sleep(1.5)
    ticks = {tick_of(at, 0.3) for at in runs}
    assert runs
    assert len(runs) == len(ticks)


async def test_a_chord_across_queues_of_every_master_gets_all_results(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    queues = spread_queues(cluster, app.namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    header = [add.s(i, 1).options(queue=queues[i % 3]) for i in range(6)]
    async with aqueue.Worker(app, queues=[*queues, "default"]):
        job = await aqueue.chord(header, total.s().options(queue=queues[2])).enqueue()
        assert await job.result(timeout=15) == sum(i + 1 for i in range(6))


async def test_a_job_after_jobs_of_other_masters_runs_once_they_ended(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    queues = spread_queues(cluster, app.namespace)
    order: list[str] = []

    @app.task
    async def note(text: str) -> str:
        order.append(text)
        return text

    async with aqueue.Worker(app, queues=queues):
        first = await note.options(queue=queues[0]).enqueue("first")
        second = await note.options(queue=queues[1]).enqueue("second")
        job = await note.options(queue=queues[2], after=[first, second]).enqueue("last")
        assert await job.result(timeout=10) == "last"
    assert order[-1] == "last"
    assert set(order) == {"first", "second", "last"}


async def seconds_to_cancel_a_running_job(app: aqueue.App, cluster: LocalCluster) -> float:
    """How long a running job on a queue of the third master took to end as cancelled."""
    started = asyncio.Event()

    @app.task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    queue = spread_queues(cluster, app.namespace)[2]
    async with aqueue.Worker(app, queues=[queue]):
        job = await forever.options(queue=queue).enqueue()
        await asyncio.wait_for(started.wait(), 10)
        cancelled_at = time.monotonic()
        await job.cancel()
        with pytest.raises(aqueue.JobCancelled):
            await job.result(timeout=5)
        return time.monotonic() - cancelled_at


async def test_a_running_job_is_cancelled_on_a_cluster(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    assert await seconds_to_cancel_a_running_job(app, cluster) < 1.0  # the promise: within 1 s


async def test_an_idle_worker_on_every_master_starts_a_new_job_at_once(
    app: aqueue.App, cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Its blocking read waits on each queue's slot at once (one read spanning slots is
    refused with CROSSSLOT, and the worker would read again only after a backoff)."""

    @app.task
    async def echo(n: int) -> int:
        return n

    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues):
        await asyncio.sleep(1.5)  # idle: blocked on every queue
        for n, queue in enumerate(queues):
            started = time.monotonic()
            job = await echo.options(queue=queue).enqueue(n)
            assert await job.result(timeout=5) == n
            assert time.monotonic() - started < 0.9  # not after a refusal and a backoff
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_worker_that_may_not_unblock_reads_still_starts_jobs_of_every_master_at_once(
    cluster: LocalCluster, namespace: str
) -> None:
    """A minimal ACL user has no CLIENT UNBLOCK: a read of one slot that returns must not wait
    for the other slots' reads to run out their BLOCK (1 s each)."""
    for node in cluster.nodes:
        with SyncRedis(port=node.port) as admin:
            admin.execute_command(
                "ACL", "SETUSER", "plain", "on", ">plain-pw", "+@all", "-client|unblock", "~*", "&*"
            )
    url = cluster.url.replace("://", "://plain:plain-pw@")
    async with aqueue.App(url, namespace=namespace, lease=3) as app:

        @app.task
        async def echo(n: int) -> int:
            return n

        queues = spread_queues(cluster, namespace)
        async with aqueue.Worker(app, queues=queues):
            await asyncio.sleep(1.5)  # idle: a read in flight on every slot
            started = time.monotonic()
            for n in range(6):
                job = await echo.options(queue=queues[n % 3]).enqueue(n)
                assert await job.result(timeout=5) == n
            assert time.monotonic() - started < 3.0  # about 6 s if each waited for a BLOCK


async def test_the_events_of_queues_on_every_master_are_all_told(
    cluster: LocalCluster, namespace: str
) -> None:
    async with aqueue.App(cluster.url, namespace=namespace, events=True) as app:

        @app.task
        async def ping() -> None: ...

        queues = spread_queues(cluster, namespace)
        seen: list[tuple[str, str]] = []

        async def listen() -> None:
            async for event in app.events(queues=queues, after="0-0"):
                seen.append((event.queue, event.type))
                if len(seen) == len(queues):
                    return

        for queue in queues:
            await ping.options(queue=queue).enqueue()
        await asyncio.wait_for(listen(), 10)
    assert sorted(seen) == sorted((queue, "enqueued") for queue in queues)


async def test_queues_on_every_master_are_paused_counted_and_their_workers_answer(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """Operating a cluster: pause and resume, stats, the worker registry, remote control."""

    @app.task
    async def echo(n: int) -> int:
        return n

    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues) as worker:
        await app.queue(queues[0]).pause()
        await asyncio.sleep(0.3)  # the worker learns of it
        paused = await echo.options(queue=queues[0]).enqueue(1)
        running = await echo.options(queue=queues[1]).enqueue(2)
        assert await running.result(timeout=5) == 2
        assert await paused.status() is aqueue.JobStatus.QUEUED
        assert (await app.queue(queues[0]).stats()).queued == 1
        await app.queue(queues[0]).resume()
        assert await paused.result(timeout=5) == 1
        [info] = await app.workers()
        assert info.id == worker.name
        answers, silent = await send_command(app, "ping", None, timeout=5)
    assert answers == {worker.name: "pong"}
    assert silent == []


async def test_the_apps_client_routes_a_command_by_the_command_table_after_an_enqueue(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """The enqueue's fast path reads the slot map first; the app's client still reads the
    command table that routes commands whose key redis-py does not place by heart."""

    @app.task
    async def noop() -> None: ...

    await noop.enqueue()
    keys = Keys(app.namespace, "default")
    async with admin_client(cluster) as admin:
        await read_as(admin, keys, "gone")
    _, claimed, *_ = await app.redis.xautoclaim(keys.stream, GROUP, "heir", 0)
    assert len(claimed) == 1


async def test_dead_letters_on_another_master_are_listed_replayed_and_purged(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    queue = spread_queues(cluster, app.namespace)[1]
    app.routes["missing.*"] = queue
    async with aqueue.Worker(app, queues=[queue]):
        jobs = [await app.enqueue("missing.task", n) for n in range(3)]
        await eventually(lambda: all_failed(jobs))
    dead = app.queue(queue)
    letters = await dead.dead_letters()
    assert {letter.job_id for letter in letters} == {job.id for job in jobs}
    assert await dead.replay_dead_letters(letter=letters[0].id) == 1
    assert await dead.purge_dead_letters() == 2
    assert await dead.dead_letters() == []


async def all_failed(jobs: list[aqueue.Job[Any]]) -> bool:
    return all([await has_status(job, aqueue.JobStatus.FAILED) for job in jobs])


def queue_on_slot(slot: int) -> str:
    """A queue name whose keys live on ``slot``."""
    return next(f"r{n}" for n in itertools.count() if key_slot(f"r{n}".encode()) == slot)


async def test_a_busy_queue_keeps_flowing_while_its_slot_moves_to_another_master(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """Enqueues, starts, acks and results follow MOVED and ASK: nothing lost, nothing twice."""
    (source, [slot, *_]), (target, _), *_ = cluster.masters()
    queue = queue_on_slot(slot)
    runs: collections.Counter[int] = collections.Counter()

    @app.task
    async def work(n: int) -> int:
        runs[n] += 1
        await asyncio.sleep(0.01)
        return n

    async def produce() -> list[aqueue.Job[int]]:
        jobs = []
        for n in range(300):
            jobs.append(await work.options(queue=queue).enqueue(n))
            await asyncio.sleep(0.005)
        return jobs

    async with aqueue.Worker(app, queues=[queue], concurrency=20):
        producing = asyncio.create_task(produce())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.reshard_one_slot, source, target)
        jobs = await producing
        results = await asyncio.gather(*(job.result(timeout=30) for job in jobs))
    assert results == list(range(300))
    assert set(runs.values()) == {1}
    assert cluster.master_of(Keys(app.namespace, queue).stream).port == target.port


async def test_a_result_awaited_while_its_slot_moves_arrives_from_the_new_master(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """The server ends a sharded subscription whose slot moved away: it is made again on the
    slot's new master, where the job's outcome is published."""
    (source, [slot, *_]), (target, _), *_ = cluster.masters()
    queue = queue_on_slot(slot)
    release = asyncio.Event()

    @app.task
    async def gated() -> str:
        await release.wait()
        return "done"

    async with aqueue.Worker(app, queues=[queue]):
        job = await gated.options(queue=queue).enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        waiting = asyncio.create_task(job.result(timeout=20))
        await asyncio.sleep(0.3)  # subscribed, on the slot's master
        await asyncio.to_thread(cluster.reshard_one_slot, source, target)
        release.set()
        released = time.monotonic()
        assert await waiting == "done"
        assert time.monotonic() - released < 5.0  # never, subscribed on the old master


def held_until_cancelled(app: aqueue.App) -> tuple[aqueue.Task[[], None], asyncio.Event]:
    """A task that runs until cancelled, and the event its cancel sets."""
    stopped = asyncio.Event()

    @app.task
    async def held() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    return held, stopped


def subscribers(node: RedisServer, channels: list[bytes]) -> tuple[list[int], list[int]]:
    """How many clients ``node`` has on each of ``channels``: sharded, then plain."""
    with SyncRedis(port=node.port) as client:
        sharded = [count for _, count in client.pubsub_shardnumsub(*channels)]
        plain = [count for _, count in client.pubsub_numsub(*channels)]
    return sharded, plain


async def test_a_worker_hears_each_queues_notices_on_that_queues_master_alone(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """Sharded pub/sub: a notice crosses the nodes of its queue's slot only, where a plain
    PUBLISH would go to every node of the cluster."""
    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues):
        for queue in queues:
            keys = Keys(app.namespace, queue)
            channels = [getattr(keys, name) for name in CHANNELS]
            home = cluster.master_of(keys.stream)
            for node, _ in cluster.masters():
                sharded, plain = await asyncio.to_thread(subscribers, node, channels)
                assert sharded == [int(node.port == home.port)] * len(channels)
                assert plain == [0] * len(channels)


async def test_a_cancel_reaches_a_worker_on_a_queue_of_every_master_at_once(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    held, stopped = held_until_cancelled(app)
    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues):
        for queue in queues:
            stopped.clear()
            job = await held.options(queue=queue).enqueue()
            await eventually(functools.partial(has_status, job, aqueue.JobStatus.RUNNING))
            await job.cancel()
            await asyncio.wait_for(stopped.wait(), 1.0)


async def test_a_pause_reaches_an_idle_worker_on_a_queue_of_every_master_at_once(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    @app.task
    async def noop() -> None:
        pass

    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues):
        await asyncio.sleep(0.5)  # idle: its reads block
        for queue in queues:
            await app.queue(queue).pause()
        await asyncio.sleep(0.3)
        jobs = [await noop.options(queue=queue).enqueue() for queue in queues]
        await asyncio.sleep(1)
        assert [await job.status() for job in jobs] == [aqueue.JobStatus.QUEUED] * len(jobs)


async def test_a_job_due_earlier_wakes_an_idle_leader_on_every_master_at_once(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """The leader sleeps until the earliest due time it saw (none: a lease's third, to renew
    its leadership); a job due sooner wakes it."""

    @app.task
    async def noop() -> None:
        pass

    queues = spread_queues(cluster, app.namespace)
    async with aqueue.Worker(app, queues=queues):
        await asyncio.sleep(0.5)  # the worker leads every queue, with nothing due
        for queue in queues:
            enqueued = time.monotonic()
            job = await noop.options(queue=queue, delay=0.2).enqueue()
            await job.result(timeout=5)
            assert time.monotonic() - enqueued < 0.2 + 0.6


async def test_a_worker_hears_a_queues_notices_again_once_its_slot_moved(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """The server ends a sharded subscription whose slot moved away: the worker subscribes on
    the slot's new master, where the notices now go."""
    (source, [slot, *_]), (target, _), *_ = cluster.masters()
    queue = queue_on_slot(slot)
    cancelled = Keys(app.namespace, queue).cancelled
    held, stopped = held_until_cancelled(app)

    async def listened_on_target() -> bool:
        [count], _ = await asyncio.to_thread(subscribers, target, [cancelled])
        return count == 1

    async with aqueue.Worker(app, queues=[queue]):
        job = await held.options(queue=queue).enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        await asyncio.to_thread(cluster.reshard_one_slot, source, target)
        await eventually(listened_on_target)
        await job.cancel()
        await asyncio.wait_for(stopped.wait(), 1.0)


async def test_a_planned_failover_under_load_loses_no_acknowledged_job(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """``CLUSTER FAILOVER`` on the replica of a busy queue's master: every enqueue that
    returned runs, once, and jobs flow again at once (figures printed with -s)."""
    figures = await _fail_over_under_load(app, cluster, cluster.fail_over)
    assert figures.lost == 0
    assert figures.duplicates == 0
    assert figures.again < 2.0


async def test_a_killed_master_is_followed_to_its_replica_under_load(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """SIGKILL of a busy queue's master: the replica takes over after the node timeout (2 s
    here) and jobs flow again once the worker's reconnect backoff (at most 5 s) tries again.
    Redis replicates asynchronously, so the last writes the master acknowledged may be lost:
    a few at most here (figures printed with -s)."""
    figures = await _fail_over_under_load(app, cluster, cluster.kill_and_replace)
    assert figures.again < 8.0  # the backoff pauses at most 5 s; CPU contention adds
    assert figures.lost <= 5


@dataclasses.dataclass
class Figures:
    acknowledged: int
    lost: int
    duplicates: int
    switch: float
    again: float
    """Seconds from the new master's takeover to the next finished job."""


async def _fail_over_under_load(
    app: aqueue.App, cluster: LocalCluster, switch: Callable[[RedisServer], RedisServer]
) -> Figures:
    queue = spread_queues(cluster, app.namespace)[0]
    master = cluster.master_of(Keys(app.namespace, queue).stream)
    runs: collections.Counter[int] = collections.Counter()
    finished: list[float] = []

    @app.task
    async def work(n: int) -> int:
        runs[n] += 1
        await asyncio.sleep(0.01)
        finished.append(time.monotonic())
        return n

    enough = asyncio.Event()

    async def produce() -> list[aqueue.Job[int]]:
        jobs: list[aqueue.Job[int]] = []
        for n in itertools.count():
            if enough.is_set():
                return jobs
            with contextlib.suppress(aqueue.AqueueError):  # refused: not acknowledged
                jobs.append(await work.options(queue=queue).enqueue(n))
            await asyncio.sleep(0.005)
        raise AssertionError("unreachable")

    async with aqueue.Worker(app, queues=[queue], concurrency=20):
        producing = asyncio.create_task(produce())
        await asyncio.sleep(0.7)
        switched = time.monotonic()
        new_master = await asyncio.to_thread(switch, master)
        took = time.monotonic() - switched
        await asyncio.sleep(1.0)  # jobs enqueued on the new master too
        enough.set()
        jobs = await producing
        outcomes = await asyncio.gather(
            *(job.result(timeout=15) for job in jobs), return_exceptions=True
        )
    assert cluster.master_of(Keys(app.namespace, queue).stream).port == new_master.port
    figures = Figures(
        acknowledged=len(jobs),
        lost=sum(isinstance(outcome, BaseException) for outcome in outcomes),
        duplicates=sum(count - 1 for count in runs.values()),
        switch=took,
        again=min((at for at in finished if at >= switched + took), default=math.inf)
        - (switched + took),
    )
    print(f"{switch.__name__}: {figures}")
    return figures
