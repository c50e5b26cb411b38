"""Closing an app leaves no connection open on the server, whatever was in flight: calls and
result waits still connecting when it closed, or the close itself cancelled half-way.

The app's connections carry a client name of their own, so the server's count is of them
alone. A server paused by ``CLIENT PAUSE`` answers no handshake, which holds the app's new
connections mid-connect for as long as the test needs: the close lands there every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import aqueue
from tests.helpers import AdminClient, Deployment, eventually
from tests.internals import GROUP, BlockingReads, Keys

pytestmark = pytest.mark.not_on(
    "cluster", "sentinel", reason="pauses and counts the clients of one server"
)

PAUSE_MS = 300
"""How long the server answers nobody: the app's connections wait for it mid-connect."""
CONNECTING = 0.05
"""Seconds the app's calls get to open their connections and send their handshakes."""

Count = Callable[[], Awaitable[int]]


@pytest.fixture
def open_connections(redis: AdminClient, namespace: str) -> Count:
    """How many connections the test's apps hold open on the server now."""

    async def count() -> int:
        clients = await redis.client_list()
        return sum(1 for client in clients if client["name"] == namespace)

    return count


def named_app(server: Deployment, namespace: str) -> aqueue.App:
    """An app whose connections carry the test's namespace as their client name."""
    return aqueue.App(f"{server.url}?client_name={namespace}", namespace=namespace)


@contextlib.asynccontextmanager
async def none_left_open(open_connections: Count) -> AsyncIterator[None]:
    """Fails unless the app's connections are all gone from the server at the end, and
    garbage collection finds none that was left open (it closes such a one, warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            yield
            await eventually(lambda: _none(open_connections))
        finally:
            gc.collect()  # here, where its warning is recorded rather than raised anywhere
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


async def test_calls_made_as_the_app_closes_leave_no_connection_open(
    server: Deployment, namespace: str, open_connections: Count
) -> None:
    async with none_left_open(open_connections):
        app = named_app(server, namespace)
        # They start while the close runs: on the client it is closing.
        calls = [asyncio.ensure_future(app.redis.ping()) for _ in range(3)]
        await app.close()
        await asyncio.gather(*calls, return_exceptions=True)


async def test_a_result_wait_connecting_when_the_app_closes_leaves_no_connection_open(
    server: Deployment, namespace: str, redis: AdminClient, open_connections: Count
) -> None:
    async with none_left_open(open_connections):
        app = named_app(server, namespace)
        job = await app.enqueue("nowhere.to.run")
        await app.close()  # the wait below is the only connection the app opens
        await redis.client_pause(PAUSE_MS)
        waiting = asyncio.ensure_future(job.result(timeout=1))
        await asyncio.sleep(CONNECTING)
        await app.close()
        await asyncio.gather(waiting, return_exceptions=True)


async def test_a_close_cancelled_half_way_still_closes_every_connection(
    server: Deployment, namespace: str, open_connections: Count
) -> None:
    # Cancelled after 1, 2, 3 ... turns of the loop, each in another of its steps. (A task
    # cancelled before its first turn never started to close anything.)
    for turns in range(1, 12):
        async with none_left_open(open_connections):
            app = named_app(server, namespace)
            job = await app.enqueue("nowhere.to.run")  # the script calls' connection
            await app.redis.ping()  # the pool's
            with pytest.raises(aqueue.ResultTimeout):
                await job.result(timeout=0)  # the result waiter's
            closing = asyncio.ensure_future(app.close())
            for _ in range(turns):
                await asyncio.sleep(0)
            closing.cancel()
            await asyncio.gather(closing, return_exceptions=True)


async def _none(open_connections: Count) -> bool:
    return await open_connections() == 0


def _held_at_start(app: aqueue.App) -> tuple[asyncio.Event, asyncio.Event]:
    """The first event is set when a worker of ``app`` starts, which then waits until the test
    sets the second."""
    starting, go_on = asyncio.Event(), asyncio.Event()

    @app.on_worker_start
    async def wait_for_the_test(worker: aqueue.Worker) -> None:
        starting.set()
        await go_on.wait()

    return starting, go_on


async def test_a_worker_whose_start_is_cancelled_stops_and_leaves_no_connection_open(
    server: Deployment, namespace: str, open_connections: Count
) -> None:
    async with none_left_open(open_connections):
        app = named_app(server, namespace)
        starting, go_on = _held_at_start(app)

        async def serve() -> None:
            async with aqueue.Worker(app):
                await asyncio.sleep(30)

        serving = asyncio.ensure_future(serve())
        await starting.wait()
        serving.cancel()
        go_on.set()  # the start goes on: the worker stops once it is up
        await asyncio.gather(serving, return_exceptions=True)
        assert await app.workers() == []
        await app.close()


async def test_a_worker_cancelled_while_it_first_registers_leaves_no_trace(
    server: Deployment, namespace: str, redis: AdminClient, open_connections: Count
) -> None:
    """Neither a registry entry kept alive by a lease thread nobody stops, nor its
    connection."""
    async with none_left_open(open_connections):
        app = named_app(server, namespace)
        starting, go_on = _held_at_start(app)

        serving = asyncio.ensure_future(aqueue.Worker(app).run(handle_signals=False))
        await starting.wait()
        # Writes wait: the worker's first beat (its registration, from the lease thread) too.
        await redis.client_pause(PAUSE_MS, all=False)
        go_on.set()
        await asyncio.sleep(CONNECTING)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await asyncio.sleep(PAUSE_MS / 1000)  # a lease thread running on has beaten by now
        assert await app.workers() == []
        await app.close()


async def test_a_worker_whose_run_is_cancelled_with_a_job_running_leaves_no_trace(
    server: Deployment, namespace: str, redis: AdminClient, open_connections: Count
) -> None:
    """Neither a connection, nor a registry entry, nor a consumer holding the job's entry."""
    async with none_left_open(open_connections):
        app = named_app(server, namespace)
        started = asyncio.Event()

        @app.task
        async def endless() -> None:
            started.set()
            await asyncio.sleep(60)

        serving = asyncio.ensure_future(aqueue.Worker(app).run(handle_signals=False))
        await endless.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        assert await app.workers() == []
        assert await redis.xinfo_consumers(Keys(namespace, "default").stream, GROUP) == []
        await app.close()


async def test_a_workers_blocking_reads_closed_half_way_still_close_their_connection(
    server: Deployment, namespace: str, redis: AdminClient, open_connections: Count
) -> None:
    stream = Keys(namespace, "default").stream
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for turns in range(1, 12):  # cancelled in another of its steps each time
        async with none_left_open(open_connections):
            app = named_app(server, namespace)
            reads = BlockingReads(app)
            assert await reads.read("reader", {stream: b">"}, count=1, block=1) == []
            closing = asyncio.ensure_future(reads.close())
            for _ in range(turns):
                await asyncio.sleep(0)
            closing.cancel()
            await asyncio.gather(closing, return_exceptions=True)
            await app.close()
