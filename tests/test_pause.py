"""A paused queue starts no job, even one that a worker's read in flight at the pause returns."""

from __future__ import annotations

import asyncio

import pytest

import aqueue

# How often the race is run: a read in flight at the pause returned the job on most runs
# before the start script looked at the flag.
RACES = 10


async def _stays_queued(job: aqueue.Job[int], seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await job.status() is not aqueue.JobStatus.QUEUED:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.slow
async def test_a_job_enqueued_right_after_a_pause_waits_for_the_resume(app: aqueue.App) -> None:
    runs: list[int] = []

    @app.task
    async def add(x: int) -> int:
        runs.append(x)
        return x

    queue = app.queue()
    async with aqueue.Worker(app):
        for race in range(RACES):
            await asyncio.sleep(0.1)  # idle: its read blocks
            await queue.pause()
            job = await add.enqueue(race)
            assert await _stays_queued(job, 0.3), f"started although paused (run {race})"
            stats = await queue.stats()
            assert (stats.queued, stats.running) == (1, 0)  # back in the queue, not held
            await queue.resume()
            assert await job.result(timeout=5) == race
            assert (await job.info()).attempts == 1  # handed back without counting one
    assert runs == list(range(RACES))  # each exactly once
