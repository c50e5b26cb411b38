"""Every key a script touches is passed in its KEYS, and all keys of a call share one hash slot.

Checked as strictly as Redis allows, on a one-node Redis Cluster (all slots): the node refuses a
call whose declared keys span two slots. It does not refuse an undeclared key of the same slot,
so every script call also runs as an ACL user allowed exactly the keys the call declares: a
script that names any other key is refused. A whole workload (enqueue at every level, delays,
retries, limits, a chain, progress, cancels, purges, dead letters and their replay, stats)
runs through that, so each script runs with the arguments aqueue gives it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import ResponseError

import aqueue
from aqueue.testing import RedisServer
from tests.conftest import IN_CI
from tests.helpers import eventually
from tests.internals import Call, DirectCalls, Keys, Script, connections_of, run_sync, scripts

LUA = Path(scripts.__file__).parent / "lua"

ONE_LOOP = True
"""Keys are the same on every event loop."""

STRICT, PASSWORD = "strict", "strict-password"
"""The ACL user each script call runs as."""

_REFUSED = re.compile(r"can't access|same slot|non local key|CROSSSLOT", re.IGNORECASE)
"""What the server answers a call that touches an undeclared key, or keys of two slots."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisServer]:
    """Debian's redis-server 7.0 as a one-node cluster that serves every slot."""
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("CI needs Debian's redis-server: .ci/run installs it with apt")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    # The cluster bus port is the port + 10000 unless set: past 65535 for many a free port.
    config = {
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-port": str(_free_port()),
    }
    with RedisServer.redis(config=config) as node, SyncRedis(port=node.port) as admin:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.02)
        admin.execute_command("ACL", "SETUSER", STRICT, "on", f">{PASSWORD}", "+@all", "&*")
        yield node


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pattern(key: bytes) -> bytes:
    """An ACL key pattern that matches ``key`` only."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", key)


class StrictCalls(DirectCalls):
    """Runs each script call as a user allowed only the keys the call declares, one at a time,
    and keeps what the server refused for that reason."""

    def __init__(self, node: RedisServer, admin: Redis) -> None:
        url = f"redis://{STRICT}:{PASSWORD}@127.0.0.1:{node.port}/0"
        super().__init__(ConnectionPool.from_url(url), limit=1)
        self._admin = admin
        self._lock = asyncio.Lock()
        self.ran: set[str] = set()
        self.refused: list[str] = []

    async def run(self, calls: Iterable[Call]) -> list[Any]:
        replies: list[Any] = []
        for call in calls:
            async with self._lock:
                await self._allow(call.keys)
                replies += await super().run([call])
            self.ran.add(call.script.name)
            if isinstance(replies[-1], ResponseError) and _REFUSED.search(str(replies[-1])):
                self.refused.append(f"{call.script.name}: {replies[-1]}")
        return replies

    async def commands(
        self, commands: Sequence[Sequence[Any]], *, errors_in_place: bool = False
    ) -> list[Any]:
        async with self._lock:
            await self._allow(None)
            return await super().commands(commands, errors_in_place=errors_in_place)

    async def _allow(self, keys: list[bytes] | None) -> None:
        patterns = [b"*"] if keys is None else [_pattern(key) for key in keys]
        await self._admin.acl_setuser(STRICT, enabled=True, reset_keys=True, keys=patterns)


@pytest.fixture
async def strict(
    cluster: RedisServer, namespace: str
) -> AsyncIterator[tuple[aqueue.App, StrictCalls]]:
    async with Redis(port=cluster.port) as admin:
        app = aqueue.App(cluster.url, namespace=namespace, lease=2, events=True)
        async with app:
            assert app.redis is not None  # bound to this loop before the calls are swapped
            calls = StrictCalls(cluster, admin)
            connections_of(app)._direct = calls
            yield app, calls


class _Sneaky(Script):
    """A script that names a key in Lua: what no script of aqueue may do."""

    def __init__(self) -> None:
        self.name = "sneaky"
        self.source = b"return redis.call('GET', KEYS[1] .. ':other')"
        self.sha = hashlib.sha1(self.source).hexdigest()


async def test_a_call_that_touches_an_undeclared_key_is_refused(
    strict: tuple[aqueue.App, StrictCalls], namespace: str
) -> None:
    _, calls = strict
    await calls.run([Call(_Sneaky(), [f"{namespace}:{{default}}:key".encode()], [])])
    assert calls.refused


async def test_a_call_with_keys_of_two_queues_is_refused(
    strict: tuple[aqueue.App, StrictCalls], namespace: str
) -> None:
    _, calls = strict
    one, other = Keys(namespace, "one"), Keys(namespace, "other")
    call = scripts.resolve(
        record=one.job("one:ab"),
        wait=other.wait("other:ab"),
        pending=one.pending("one:ab"),
        dependency="x",
        dependency_status="succeeded",
    )
    await calls.run([call])
    assert calls.refused


@pytest.mark.slow
async def test_every_script_touches_only_the_keys_its_call_declares(
    strict: tuple[aqueue.App, StrictCalls], cluster: RedisServer
) -> None:
    app, calls = strict
    gate = asyncio.Event()
    tries: list[int] = []

    @app.task
    async def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(retries=1, backoff=aqueue.backoff.fixed(0.05))
    async def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("first try fails")
        return "ok"

    @app.task(retries=0)
    async def broken() -> None:
        raise ValueError("always")

    @app.task(max_concurrency=1, rate_limit="50/s")
    async def scarce(n: int) -> int:
        return n

    @app.task
    async def reports() -> None:
        await aqueue.current_job().progress(0.5, "halfway")

    @app.task
    async def blocked() -> None:
        await gate.wait()

    queue = app.queue()
    # Queued jobs dropped before any worker reads them, and one cancelled while it waits.
    await add.options(priority=7).enqueue(1)
    await add.enqueue(2)
    assert await queue.purge_queued() == 2
    for waiting in (await add.enqueue(3), await add.options(delay=60).enqueue(3)):
        await waiting.cancel()
    jobs: list[aqueue.Job[Any]] = [
        await add.enqueue(1, 2),
        await add.options(priority=9, key="only-one").enqueue(3),
        await add.options(delay=0.1, priority=2).enqueue(4),
        await flaky.enqueue(),
        await reports.enqueue(),
        *[await scarce.enqueue(n) for n in range(3)],
    ]
    chain = await (add.s(1, 1) | add.s(1)).enqueue()
    failing = await broken.enqueue()
    async with aqueue.App(cluster.url, namespace=app.namespace) as producer:
        # Without the task's code: arguments that do not bind, a dead letter.
        unbound = app.job((await producer.enqueue(add.name, 1, 2, 3)).id)
    running = await blocked.enqueue()
    async with aqueue.Worker(app, concurrency=20, grace_period=0.1):
        for job in jobs:
            await job.result(timeout=10)
        assert await chain.result(timeout=10) == 3
        for failed in (failing, unbound):
            with pytest.raises(aqueue.TaskFailed):
                await failed.result(timeout=10)
        await eventually(lambda: _is_running(running))
        await running.cancel()
        assert await queue.replay_dead_letters() == 1
        await eventually(lambda: _is_dead(queue))
        await queue.stats()
        handed_back = await blocked.enqueue()  # still running at the stop: handed back
        await eventually(lambda: _is_running(handed_back))
    # The lease thread's calls, on a synchronous client of the same user.
    keys = Keys(app.namespace, "default")
    with SyncRedis(port=cluster.port, username=STRICT, password=PASSWORD) as client:
        for call in (
            # The leader's renewal between its looks, every third of a lease.
            scripts.lead(leader=keys.leader, worker="w", lead_ms=1000),
            scripts.register(
                index=b"%b:{@registry}:workers" % app.namespace.encode(),
                record=b"%b:{@registry}:worker:w" % app.namespace.encode(),
                name="w",
                worker="{}",
                ttl_ms=1000,
                forget_after=1000,
            ),
            scripts.renew(stream=keys.stream, group="aqueue", consumer="w", entry_ids=[b"1-0"]),
        ):
            await calls._allow(call.keys)
            [reply] = run_sync(client, [call])
            assert not isinstance(reply, Exception), reply
            calls.ran.add(call.script.name)
    assert calls.refused == []
    assert calls.ran == {path.stem for path in LUA.glob("*.lua") if not path.stem.startswith("_")}


async def _is_running(job: aqueue.Job[Any]) -> bool:
    return await job.status() is aqueue.JobStatus.RUNNING


async def _is_dead(queue: aqueue.Queue) -> bool:
    return (await queue.stats()).dead == 1
