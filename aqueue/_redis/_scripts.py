"""Lua scripts shipped as package data, run by SHA with a reload when the server forgot them."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError


class Script:
    """One Lua script from ``aqueue/_redis/lua``.

    Runs with EVALSHA; the server's script cache is empty after a restart or SCRIPT FLUSH, so a
    NOSCRIPT reply loads the source once and retries. (redis-py's own Script object checks
    SCRIPT EXISTS before every pipeline, an extra round trip on the hot path.)
    """

    def __init__(self, name: str, *, uses: tuple[str, ...] = ()) -> None:
        self.name = name
        lua = resources.files(__package__).joinpath("lua")
        # Shared pieces (``lua/_<piece>.lua``) go first: Lua scripts cannot import.
        parts = [lua.joinpath(f"_{piece}.lua").read_bytes() for piece in uses]
        self.source = b"".join([*parts, lua.joinpath(f"{name}.lua").read_bytes()])
        self.sha = hashlib.sha1(self.source).hexdigest()

    async def __call__(self, client: Redis, keys: list[bytes], args: list[Any]) -> Any:
        """Run the script and return its reply."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def call_sync(self, client: SyncRedis, keys: list[bytes], args: list[Any]) -> Any:
        """Run the script on a synchronous client (for threads that must not need the loop)."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Pipeline, keys: list[bytes], args: list[Any]) -> None:
        """Add a call to ``pipe``; run the pipeline with :func:`execute`."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def execute(client: Redis, pipe: Pipeline, scripts: list[Script]) -> list[Any]:
    """Run ``pipe`` (built from ``scripts``) and return its replies, errors in place.

    The scripts are loaded (SCRIPT LOAD) at the head of the same pipeline: a NOSCRIPT reply
    retried afterwards would run the refused call after the ones that followed it, and the
    order of a pipeline's calls matters. Error replies are returned as exception objects, for
    the caller to handle one by one; connection errors are raised.
    """
    loads: list[tuple[tuple[bytes, ...], dict[str, Any]]] = [
        ((b"SCRIPT", b"LOAD", script.source), {}) for script in scripts
    ]
    pipe.command_stack[0:0] = loads
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    for reply in replies[: len(loads)]:
        if isinstance(reply, Exception):
            raise reply
    return replies[len(loads) :]


ENQUEUE = Script("enqueue", uses=("event",))
START = Script("start", uses=("queued", "event"))
FINISH = Script("finish", uses=("event",))
REQUEUE = Script("requeue")
HEARTBEAT = Script("heartbeat")
REGISTER = Script("register")
PROMOTE = Script("promote")
RENEW = Script("renew")
REPLAY = Script("replay", uses=("event",))
PRUNE = Script("prune")
PURGE = Script("purge", uses=("queued", "event"))
CANCEL = Script("cancel", uses=("queued", "event"))
PROGRESS = Script("progress")
STATS = Script("stats")
WAIT = Script("wait", uses=("event",))
DEPEND = Script("depend", uses=("queued",))
RESOLVE = Script("resolve")
FETCH = Script("fetch")
RELEASE = Script("release")
UNBLOCK = Script("unblock", uses=("event",))
