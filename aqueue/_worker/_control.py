"""Remote control: commands sent with ``aqueue control`` reach the worker through pub/sub.

The subscription has a connection of its own and costs the server nothing while no command
comes. Commands go by plain PUBLISH, which a Redis Cluster sends to every node: a command is
for every worker, whichever queues it serves. (The notices of the worker's queues go by
sharded pub/sub instead, in each queue's slot: see ``_reclaim.py``.)

Each command names the workers it is for (or none: all); each of those answers on the
command's reply list, so the sender learns which workers heard it. A lost connection is
retried with backoff; a command published meanwhile is missed, and its sender says so (no
answer from that worker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from redis.asyncio import Redis

from .._app import App
from .._redis._backoff import Backoff
from .._redis._connect import own_client
from .._redis._errors import REDIS_ERRORS
from .._registry import control_channel, control_replies

logger = logging.getLogger("aqueue.worker")

REPLY_TTL_MS = 60_000
"""How long an answer waits for its sender (which waits a few seconds at most)."""


class Controller:
    """Listens for commands addressed to one worker and answers each."""

    def __init__(self, app: App, name: str, shutdown: Callable[[], None]) -> None:
        self._app = app
        self._name = name
        self._shutdown = shutdown
        self.listening = asyncio.Event()
        """Set once subscribed: a worker counts as started only when a command reaches it."""

    async def run(self) -> None:
        """Listen until cancelled (the worker's task group closes at the end of a stop)."""
        backoff = Backoff(logger, "listen for control commands")
        channel = control_channel(self._app.namespace)
        while True:
            client = own_client(self._app.url)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self.listening.set()
                        backoff.succeeded()
                    elif message["type"] == "message":
                        await self._handle(client, message["data"])
            except REDIS_ERRORS as exc:
                await backoff.failed(exc)
            finally:
                # Shielded: a stop cancels every await of this task (an anyio scope), and
                # the client's pool holds the connection the answers went out on.
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()
                    await client.aclose()

    async def _handle(self, client: Redis, raw: bytes) -> None:
        try:
            command: Any = orjson.loads(raw)
            request, action, workers = command["id"], command["command"], command["workers"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("ignoring a control message that aqueue did not write: %r", raw[:200])
            return
        if workers is not None and self._name not in workers:
            return
        if action == "ping":
            answer = "pong"
        elif action == "shutdown":
            answer = "stopping"
        else:
            answer = f"unknown command {action!r}"
        reply = orjson.dumps({"worker": self._name, "command": action, "answer": answer})
        key = control_replies(self._app.namespace, str(request))
        pipe = client.pipeline(transaction=True)
        pipe.rpush(key, reply)
        pipe.pexpire(key, REPLY_TTL_MS)
        await pipe.execute()
        if action == "shutdown":
            logger.info("shutdown requested through aqueue control: stopping gracefully")
            self._shutdown()
