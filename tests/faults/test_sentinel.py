"""A Sentinel failover under load: a producer and a worker on a ``redis+sentinel://`` URL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest

import aqueue
from tests.helpers import eventually
from tests.internals import send_command
from tests.sentinels import SentinelSet

pytestmark = pytest.mark.slow

JOBS = 300
FAILOVER_AT = 100
"""The failover starts once this many jobs were enqueued, while the worker runs them."""
REPLICATION_WINDOW = 5
"""Most acknowledged enqueues the promotion may undo: Redis replicates asynchronously, so a
write the old master acknowledged as its replica was being promoted never reached the new
master (3 runs of 9 lost one: docs/guide/deployment.md). More would be aqueue's doing."""


@pytest.mark.timeout(180)
async def test_a_worker_and_a_producer_follow_a_sentinel_failover_and_run_every_job_kept(
    sentinel_set: SentinelSet, namespace: str, report: Callable[..., None]
) -> None:
    app = aqueue.App(sentinel_set.url, namespace=namespace)
    runs: Counter[int] = Counter()
    ran_at: list[float] = []

    @app.task
    async def work(n: int) -> int:
        # Counted here, not in Redis: a count kept there could be undone by the failover.
        runs[n] += 1
        ran_at.append(time.monotonic())
        await asyncio.sleep(0.01)
        return 2 * n

    acknowledged: dict[int, aqueue.Job[int]] = {}
    refused = 0
    async with app, aqueue.Worker(app, concurrency=20):
        failover: asyncio.Task[float] | None = None
        started = 0.0
        n = 0
        while len(acknowledged) < JOBS:
            if failover is None and len(acknowledged) == FAILOVER_AT:
                started = time.monotonic()
                failover = asyncio.create_task(asyncio.to_thread(sentinel_set.failover))
            try:
                acknowledged[n] = await work.enqueue(n)
            except aqueue.ConnectionFailed:
                refused += 1  # never acknowledged: the producer knows it was not enqueued
                await asyncio.sleep(0.05)
            n += 1
            await asyncio.sleep(0.005)  # a steady load, not a burst
        assert failover is not None
        switched = await failover
        # A job the new master never got has no record there (the enqueue writes it with
        # the stream entry, in one script): it never ran. Every other one completes.
        undone = {
            n for n, job in acknowledged.items() if await job.status() is aqueue.JobStatus.UNKNOWN
        }
        results = {
            n: await job.result(timeout=60) for n, job in acknowledged.items() if n not in undone
        }
        answers, silent = await send_command(app, "ping", None, timeout=10)  # control follows

        async def beat_since() -> bool:  # the lease thread follows: its heartbeats are new
            [worker] = await app.workers()
            return worker.processed >= len(results)

        await eventually(beat_since, timeout=20)  # a beat every lease / 3 (10 s)
    assert (list(answers.values()), silent) == (["pong"], [])
    assert results == {n: 2 * n for n in acknowledged if n not in undone}
    assert not any(runs[n] for n in undone)
    assert len(undone) <= REPLICATION_WINDOW
    after = [at - started for at in ran_at if at >= started]
    pause = max(b - a for a, b in zip([0.0, *after], after, strict=False))
    report(
        acknowledged=len(acknowledged),
        lost_in_replication=len(undone),
        ran_twice=sum(1 for count in runs.values() if count > 1),
        refused_in_failover=refused,
        sentinels_switched_s=round(switched, 1),
        longest_pause_in_runs_s=round(pause, 1),
    )
