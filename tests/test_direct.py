"""The hot-path connections (enqueue, starts, acks, record reads): each call gets its own
replies, whatever else the server sends on the connection."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually
from tests.internals import DirectCalls, _Room, connections_of

pytestmark = pytest.mark.not_on(
    "cluster",
    reason="these test one server's fast path (keyless commands, one pool); a Cluster's, routed "
    "by key to each master, is tested in test_cluster_urls.py",
)


async def test_a_resp3_false_reply_does_not_hold_up_the_replies_behind_it(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(f"{server.url}?protocol=3", namespace=namespace) as app:
        script = "redis.setresp(3); return false"
        replies = await asyncio.wait_for(
            connections_of(app).direct.commands([(b"EVAL", script, 0), (b"PING",)]), 5
        )
    assert replies == [False, b"PONG"]


async def test_a_resp3_push_amid_the_replies_is_no_reply(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    """Client tracking makes the server push an invalidation when a key it read changes,
    here in the middle of the replies to the call that changes it."""
    key = f"{namespace}:tracked"
    await redis.set(key, "before")
    async with aqueue.App(f"{server.url}?protocol=3", namespace=namespace) as app:
        tracked = [(b"CLIENT", b"TRACKING", b"ON"), (b"GET", key), (b"SET", key, b"after")]
        assert await connections_of(app).direct.commands(tracked) == [b"OK", b"before", b"OK"]
        assert await connections_of(app).direct.command(b"PING") == b"PONG"


async def test_calls_beyond_the_connection_limit_wait_for_a_free_connection(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace, max_connections=2) as app:
        replies = await asyncio.gather(
            *(
                connections_of(app).direct.command(b"EVAL", "return ARGV[1]", 0, i)
                for i in range(20)
            )
        )
        assert replies == [str(i).encode() for i in range(20)]
        direct = connections_of(app).direct
        assert isinstance(direct, DirectCalls)
        assert len(direct._idle) == 2


async def test_a_call_cancelled_while_it_waits_for_a_connection_takes_none_away(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace, max_connections=1) as app:
        slow = asyncio.create_task(
            connections_of(app).direct.command(b"EVAL", "redis.call('PING')", 0)
        )
        waiting = asyncio.create_task(connections_of(app).direct.command(b"PING"))
        await asyncio.sleep(0)  # both have asked for the one connection
        waiting.cancel()
        await slow
        assert await asyncio.wait_for(connections_of(app).direct.command(b"PING"), 5) == b"PONG"


async def test_a_caller_handed_a_connection_as_it_is_cancelled_passes_it_on() -> None:
    room = _Room(1)
    await room.take()
    handed = asyncio.create_task(room.take())
    await asyncio.sleep(0)  # waiting for the one place
    room.give()  # the place goes to the waiter...
    handed.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(room.take(), 1)  # the place was passed on, not lost


async def test_a_batch_written_in_pieces_gets_every_reply_in_order(
    server: RedisServer, namespace: str
) -> None:
    """Commands of mixed sizes, written in pieces of a few kilobytes: every reply, in order."""
    values = [b"x" * (10_000 if i % 50 == 0 else i % 7) + str(i).encode() for i in range(400)]
    async with aqueue.App(server.url, namespace=namespace) as app:
        replies = await connections_of(app).direct.commands([(b"ECHO", value) for value in values])
    assert replies == values


async def test_a_connection_in_use_when_the_app_closes_is_closed_after_its_call(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    before = len(await redis.client_list())
    app = aqueue.App(server.url, namespace=namespace)
    # A call that stays on the wire for 0.3 s without blocking the server.
    call = asyncio.create_task(
        connections_of(app).direct.command(b"BLPOP", f"{namespace}:empty", 0.3)
    )
    await eventually(lambda: _clients_are(redis, before + 1))
    await app.close()
    assert not call.done()

    assert await call is None
    await eventually(lambda: _clients_are(redis, before))


async def _clients_are(redis: Redis, count: int) -> bool:
    return len(await redis.client_list()) == count
