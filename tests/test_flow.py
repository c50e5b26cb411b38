"""Routing tables and backpressure."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.internals import Keys


def test_routes_send_tasks_that_name_no_queue_to_the_first_matching_queue() -> None:
    app = aqueue.App(routes={"emails.*": "emails", "reports.*": "slow"})

    @app.task(name="emails.send")
    async def send() -> None: ...

    @app.task(name="emails.digest", queue="batch")
    async def digest() -> None: ...

    @app.task(name="misc.ping")
    async def ping() -> None: ...

    assert (send._config.queue, digest._config.queue, ping._config.queue) == (
        "emails",
        "batch",  # an explicit queue wins over the routes
        "default",
    )
    assert app.route("reports.monthly") == "slow"


async def test_enqueue_by_name_follows_the_routes(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    async with aqueue.App(server.url, namespace=namespace, routes={"emails.*": "emails"}) as app:
        job = await app.enqueue("emails.send", "a@b.c")
    assert job.queue == "emails"
    assert await redis.xlen(Keys(namespace, "emails").stream) == 1


async def test_a_full_queue_refuses_jobs_and_writes_nothing(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    async with aqueue.App(server.url, namespace=namespace, max_queue_length=3) as app:

        @app.task
        async def work() -> None: ...

        await work.enqueue_many([(), ()])
        await work.options(delay=60).enqueue()  # scheduled jobs count too
        with pytest.raises(aqueue.QueueFull, match="limit of 3 jobs"):
            await work.enqueue()
        with pytest.raises(aqueue.QueueFull) as full:
            await work.enqueue_many([(), ()])
        assert full.value.jobs == []
    assert await redis.xlen(Keys(namespace, "default").stream) == 2


async def test_a_per_queue_limit_leaves_other_queues_alone(
    server: RedisServer, namespace: str
) -> None:
    limits = {"small": 1}
    async with aqueue.App(server.url, namespace=namespace, max_queue_length=limits) as app:

        @app.task(queue="small")
        async def small() -> None: ...

        @app.task
        async def other() -> None: ...

        await small.enqueue()
        with pytest.raises(aqueue.QueueFull):
            await small.enqueue()
        await other.enqueue_many([() for _ in range(5)])


async def test_wait_true_waits_for_room_instead_of_failing(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace, max_queue_length=2) as app:

        @app.task
        async def work(n: int) -> int:
            return n

        first = await work.enqueue_many([(1,), (2,)])
        waiting = asyncio.create_task(work.options(wait=True).enqueue(3))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        async with aqueue.Worker(app):
            third = await asyncio.wait_for(waiting, 10)
            assert [await job.result(timeout=5) for job in [*first, third]] == [1, 2, 3]


async def test_a_key_deduplicates_while_the_job_waits_and_frees_once_it_ends(
    app: aqueue.App,
) -> None:
    @app.task
    async def charge(order: str) -> str:
        return f"charged {order}"

    first = await charge.options(key="order-42").enqueue("42")
    again = await charge.options(key="order-42").enqueue("42")
    assert again == first
    async with aqueue.Worker(app):
        assert await first.result(timeout=5) == "charged 42"
    later = await charge.options(key="order-42").enqueue("42")
    assert later != first


async def test_a_key_ttl_keeps_deduplicating_after_the_job_ended(app: aqueue.App) -> None:
    @app.task
    async def charge(order: str) -> str:
        return f"charged {order}"

    async with aqueue.Worker(app):
        first = await charge.options(key="order-7", key_ttl=60).enqueue("7")
        await first.result(timeout=5)
        assert await charge.options(key="order-7").enqueue("7") == first


async def test_fifty_racing_producers_with_one_key_add_one_job(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def charge(order: str) -> None: ...

    jobs = await asyncio.gather(*(charge.options(key="order-9").enqueue("9") for _ in range(50)))
    assert len({job.id for job in jobs}) == 1
    assert await redis.xlen(Keys(app.namespace, "default").stream) == 1


async def test_a_retried_job_keeps_its_key_until_it_ends_for_good(app: aqueue.App) -> None:
    @app.task(retries=1, backoff=aqueue.backoff.fixed(0.3))
    async def flaky() -> int:
        if aqueue.current_job().attempt == 1:
            raise ConnectionError("once")
        return 1

    async with aqueue.Worker(app):
        job = await flaky.options(key="k").enqueue()
        await asyncio.sleep(0.15)  # failed once, waiting for its retry
        assert await flaky.options(key="k").enqueue() == job
        assert await job.result(timeout=5) == 1


async def test_a_worker_on_several_queues_shares_between_them(app: aqueue.App) -> None:
    order: list[str] = []

    @app.task(queue="a")
    async def in_a() -> None:
        order.append("a")

    @app.task(queue="b")
    async def in_b() -> None:
        order.append("b")

    jobs = await in_a.enqueue_many([() for _ in range(20)])
    jobs += await in_b.enqueue_many([() for _ in range(20)])
    async with aqueue.Worker(app, queues=["a", "b"], concurrency=2):
        await asyncio.gather(*(job.result(timeout=10) for job in jobs))
    first_half = order[:20]
    assert 8 <= first_half.count("a") <= 12  # both backlogs advance together


@pytest.mark.one_loop  # 500 jobs through a queue of 20: whose writes they are is the server's
async def test_waiting_producers_never_write_a_job_twice(app: aqueue.App) -> None:
    limited = aqueue.App(app.url, namespace=app.namespace, max_queue_length=20)
    runs: dict[int, int] = {}

    @limited.task(name="count")
    async def count(n: int) -> None:
        runs[n] = runs.get(n, 0) + 1

    async with limited, aqueue.Worker(limited, concurrency=50):
        everything = []
        for batch in range(5):
            calls = [(batch * 100 + i,) for i in range(100)]
            jobs = await count.options(wait=True).enqueue_many(calls)
            assert len({job.id for job in jobs}) == 100
            everything += jobs
        await asyncio.gather(*(job.result(timeout=20) for job in everything))
    assert runs == dict.fromkeys(range(500), 1)
