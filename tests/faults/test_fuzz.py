"""Fuzzing the decoder and dispatcher: whatever lands in the stream is run or dead-lettered,
and nothing escapes the worker loop."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import aqueue
from tests.helpers import Deployment, admin_client
from tests.internals import Keys

pytestmark = pytest.mark.slow

names = st.sampled_from(["echo", "missing.task", ""]) | st.text(max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
payloads = st.binary(max_size=40) | st.builds(
    lambda args, kwargs: orjson.dumps([args, kwargs]),
    st.lists(json_values, max_size=3),
    st.dictionaries(st.sampled_from(["value", "x", "extra"]), json_values, max_size=2),
)
entries = st.fixed_dictionaries(
    {},
    optional={
        b"j": st.sampled_from([b"default:abc", b"default:", b"nonsense", b"\xff\xfe"]),
        b"t": names.map(str.encode) | st.binary(max_size=8),
        b"p": payloads,
        b"r": st.sampled_from([b"0", b"60", b"x", b"-1"]),
        b"o": st.sampled_from([b'{"timeout": 1}', b"{", b"[]", b'{"timeout": "x"}']),
    },
)


# No shrinking: a failure prints its batch as found, and the test stays bounded in time.
@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(batch=st.lists(entries, min_size=1, max_size=25))
def test_every_entry_is_run_or_dead_lettered(
    server: Deployment, batch: list[dict[bytes, bytes]]
) -> None:
    asyncio.run(_run_batch(server, batch))


async def _run_batch(server: Deployment, batch: list[dict[bytes, bytes]]) -> None:
    # A namespace of its own per example (id(batch) was reused across examples, which then
    # counted each other's dead letters).
    namespace = f"fuzz{uuid.uuid4().hex[:12]}"
    # A lease long enough that no entry is reclaimed mid-test: a redelivery after a stall
    # would count an entry twice, and this test is about dispatch, not crash recovery.
    # No grace for unknown task names: no other worker will ever know these garbage ones.
    app = aqueue.App(server.url, namespace=namespace, lease=5, unknown_task_grace=0)
    ran = 0

    @app.task(name="echo")
    async def echo(value: object = None) -> object:
        nonlocal ran
        ran += 1
        return value

    keys = Keys(namespace, "default")
    async with admin_client(server) as redis:
        for fields in batch:
            entry: dict[Any, Any] = fields or {b"empty": b""}  # redis-py types the dict invariant
            await redis.xadd(keys.stream, entry)
        async with app, aqueue.Worker(app, concurrency=10) as worker:
            async with asyncio.timeout(10):
                while await redis.xlen(keys.stream):  # noqa: ASYNC110 - polls Redis
                    await asyncio.sleep(0.02)
        dead = await redis.xlen(keys.dead)
        # An entry whose job id already ended (a duplicate id) is acked without running.
        assert ran + dead + worker.skipped == len(batch)
        assert (await redis.xpending(keys.stream, "aqueue"))["pending"] == 0
