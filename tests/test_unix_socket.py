"""``unix://`` URLs: producers, workers and results over a local socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import aqueue
from aqueue.testing import RedisServer


@pytest.fixture
def socket_path(server: RedisServer, tmp_path: Path) -> Iterator[Path]:
    """A server of the same kind that also listens on a unix socket, at the path yielded."""
    path = tmp_path / "redis.sock"
    local = RedisServer(server.binary, config={"unixsocket": str(path), "unixsocketperm": "700"})
    with local:
        yield path


async def test_enqueue_work_and_results_over_a_unix_socket(
    socket_path: Path, namespace: str
) -> None:
    app = aqueue.App(f"unix://{socket_path}?db=0", namespace=namespace, lease=3)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, aqueue.Worker(app):
        single = await add.enqueue(1, 2)
        jobs = await add.enqueue_many([(i, i) for i in range(50)])
        assert await single.result(timeout=10) == 3
        assert [await job.result(timeout=10) for job in jobs] == [2 * i for i in range(50)]
