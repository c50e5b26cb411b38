"""Tests of the shop, with aqueue's pytest plugin (enabled in pytest.ini)."""

from __future__ import annotations

import shop

import aqueue
from aqueue.pytest_plugin import EnqueuedJobs


async def test_checkout_enqueues_the_fulfilment(aqueue_jobs: EnqueuedJobs) -> None:
    await shop.checkout(42, "ada@example.com")
    aqueue_jobs.assert_enqueued(shop.fulfil, 42, "ada@example.com")
    assert aqueue_jobs.of(shop.send_receipt) == []  # nothing ran yet


async def test_fulfilment_sends_the_receipt(aqueue_jobs: EnqueuedJobs) -> None:
    await shop.checkout(7, "bob@example.com")
    await aqueue_jobs.run_until_empty()  # runs fulfil, then the send_receipt it enqueued
    aqueue_jobs.assert_enqueued(shop.send_receipt, 7, "bob@example.com")
    assert "bob@example.com" in shop.SENT


async def test_a_worker_runs_jobs_while_the_test_waits(
    aqueue_app: aqueue.App, aqueue_worker: aqueue.Worker
) -> None:
    job = await shop.send_receipt.enqueue(1, "cy@example.com")
    assert await job.result(timeout=5) == "receipt for order 1 sent to cy@example.com"


async def test_each_test_starts_with_empty_queues(aqueue_app: aqueue.App) -> None:
    stats = await aqueue_app.queue("emails").stats()
    assert (stats.queued, stats.scheduled, stats.running) == (0, 0, 0)
