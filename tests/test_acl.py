"""A minimal Redis ACL user: only the app's keys and channels, no dangerous commands."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer

ONE_LOOP = True  # what a user may do is the server's to say: the loop makes no difference


@pytest.fixture
async def minimal_user(server: RedisServer, namespace: str) -> AsyncIterator[str]:
    """A user limited to the namespace's keys and channels, without @dangerous commands."""
    admin = Redis.from_url(server.url)
    user = f"user-{namespace}"
    await admin.acl_setuser(
        user,
        enabled=True,
        passwords=["+secret"],
        keys=[f"{namespace}:*"],
        channels=[f"{namespace}:*"],
        categories=["+@all", "-@dangerous", "-@admin"],
    )
    yield f"redis://{user}:secret@127.0.0.1:{server.port}/0"
    await admin.acl_deluser(user)
    await admin.aclose()


async def test_enqueue_work_and_results_under_a_minimal_acl_user(
    minimal_user: str, namespace: str
) -> None:
    app = aqueue.App(minimal_user, namespace=namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, aqueue.Worker(app):
        jobs = await add.enqueue_many([(i, i) for i in range(20)])
        assert [await job.result(timeout=10) for job in jobs] == [2 * i for i in range(20)]
        assert (await app.queue().stats()).workers == 1


async def test_keys_outside_the_namespace_are_refused_with_a_clear_error(
    minimal_user: str, namespace: str
) -> None:
    app = aqueue.App(minimal_user, namespace=f"{namespace}x-other")

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        with pytest.raises(aqueue.ServerError, match="refused a command"):
            await add.enqueue(1, 2)


async def test_a_wrong_password_is_reported_as_refused_credentials(
    minimal_user: str, namespace: str
) -> None:
    app = aqueue.App(minimal_user.replace(":secret@", ":wrong@"), namespace=namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        with pytest.raises(aqueue.ConnectionFailed, match="refused the credentials") as refused:
            await add.enqueue(1, 2)
    assert "wrong" not in str(refused.value)
