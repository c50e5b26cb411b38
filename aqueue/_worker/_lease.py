"""Liveness from a thread of its own: heartbeats, and lease renewal of every job in flight.

A task that blocks the event loop (CPU-bound code in an async task, a sync call that should
have been a thread) must not make its job look abandoned: if renewal ran on the loop, a long
block would let the lease lapse and another worker would run the job a second time. This
thread keeps renewing while the loop is stuck, and says when the loop lags.

Each stream's renewal is its own attempt: a refusal of one (a stream turned into another type
by hand) must not keep the others from running, or the jobs of every stream would lose their
leases and run a second time elsewhere.

A beat is one call, whatever the number of queues: the worker's record in the registry (see
``_presence.py``), which names its queues, is what says which live workers serve a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from .._redis import _calls as scripts
from .._redis._connect import thread_client
from .._redis._keys import GROUP, Keys
from .._redis._scripts import run_sync
from ._presence import Presence

logger = logging.getLogger("aqueue.worker")

RENEW_CHUNK = 1000
LOOP_LAG_WARNING = 1.0
"""Seconds the event loop may be unresponsive before the keeper logs it."""


class LeaseKeeper:
    """Renews leases about three times per lease period and beats the worker's heart."""

    def __init__(
        self,
        *,
        url: str,
        consumer: str,
        lease: float,
        in_flight: dict[tuple[bytes, bytes], Keys],
        loop: asyncio.AbstractEventLoop,
        presence: Presence | None = None,
    ) -> None:
        self._client = thread_client(url, timeout=max(1.0, lease / 3))
        self._consumer = consumer
        self._lease = lease
        self._in_flight = in_flight
        self._loop = loop
        self._presence = presence
        self._stopping = threading.Event()
        self._starting = threading.Lock()
        """Held by :meth:`start`: a stop that comes meanwhile waits, then stops what started."""
        self._thread = threading.Thread(
            target=self._run, name=f"aqueue-lease-{consumer}", daemon=True
        )
        # Whether the beat and which streams' renewal failed last time: a failure is
        # logged when it starts and when it ends, not every cycle in between.
        self._beats_failing: set[str] = set()
        self._renewals_failing: set[str] = set()
        self._died = asyncio.Event()
        self._death: Exception | None = None
        # When the thread last asked the loop to answer, and when the loop last did.
        self._last_ping = self._last_pong = time.monotonic()
        self.lost = 0
        """Jobs this worker was still running when another worker had claimed them."""

    def start(self) -> None:
        """Beat once now (so the worker is counted at once), then keep going in the thread.

        Blocks: call it through a thread. Its caller may be cancelled meanwhile and
        :meth:`stop` it at once: the stop waits for the start, which does nothing once
        stopped."""
        with self._starting:
            if self._stopping.is_set():
                return
            self._beat()
            self._thread.start()

    async def watch(self) -> None:
        """Wait, for as long as the thread keeps renewing; raise what killed it if it dies."""
        await self._died.wait()
        assert self._death is not None
        raise self._death

    def stop(self) -> None:
        """Stop renewing and deregister the worker. Blocks: call it through a thread."""
        with self._starting:
            self._stopping.set()
        if self._thread.ident is not None:  # started
            self._thread.join()
        presence = self._presence
        if presence is not None:
            call = scripts.register(
                index=presence.index,
                record=presence.record,
                name=presence.name,
                worker="",
                ttl_ms="",
                forget_after="",
            )
            try:
                self._call(call)
            except Exception as exc:
                logger.warning("could not deregister worker %s: %s", self._consumer, exc)
        self._client.close()

    def _call(self, call: scripts.Call) -> Any:
        """The reply to one call; what the server refused is raised."""
        [reply] = run_sync(self._client, [call])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._lease / 3):
                self._check_loop()
                self._beat()
        except Exception as exc:
            # A bug of ours: with renewal gone, every running job would run twice. The loop
            # learns of it (see watch) and stops the worker with this error.
            self._death = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
                self._loop.call_soon_threadsafe(self._died.set)

    def _check_loop(self) -> None:
        # Timed from the question, not from the last answer: the renewals in between may take
        # seconds on a saturated server, which is no lag of the loop.
        now = time.monotonic()
        if self._last_pong < self._last_ping:  # not answered yet: still counting from then
            lag = now - self._last_ping
            if lag > LOOP_LAG_WARNING:
                logger.warning(
                    "the event loop has not answered for %.1f s: a task blocks it (use a sync "
                    "task or a thread for blocking work); leases are still renewed",
                    lag,
                )
            return
        self._last_ping = now
        with contextlib.suppress(RuntimeError):  # the loop is closed: the worker is stopping
            self._loop.call_soon_threadsafe(self._pong)

    def _pong(self) -> None:
        self._last_pong = time.monotonic()

    def _beat(self) -> None:
        presence = self._presence
        if presence is not None:
            call = scripts.register(
                index=presence.index,
                record=presence.record,
                name=presence.name,
                worker=presence.snapshot(),
                ttl_ms=int(self._lease * 1000),
                forget_after=int(self._lease * 10_000),
            )
            try:
                self._call(call)
            except Exception as exc:
                _failed(self._beats_failing, presence.name, "update the registry for", exc)
            else:
                _worked(self._beats_failing, presence.name, "updating the registry for")
        self._renew()

    def _renew(self) -> None:
        by_stream: dict[bytes, list[bytes]] = {}
        for stream, entry_id in self._in_flight.copy():
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            name = stream.decode(errors="replace")
            refused: Exception | None = None
            for start in range(0, len(ids), RENEW_CHUNK):
                chunk = ids[start : start + RENEW_CHUNK]
                call = scripts.renew(
                    stream=stream, group=GROUP, consumer=self._consumer, entry_ids=chunk
                )
                try:
                    lost = self._call(call)
                except Exception as exc:
                    # Whatever the server answers (WRONGTYPE, a lost connection), the other
                    # chunks and streams are still renewed, and this one again next cycle.
                    refused = exc
                    continue
                if lost:
                    self.lost += len(lost)
                    logger.warning(
                        "%d running job(s) were claimed by another worker (this worker was "
                        "unresponsive past its lease); their outcomes from here will be refused",
                        len(lost),
                    )
            if refused is None:
                _worked(self._renewals_failing, name, "renewing leases in")
            else:
                _failed(self._renewals_failing, name, "renew leases in", refused)
        # Forget streams no longer in flight: the set stays as small as the work.
        self._renewals_failing &= {stream.decode(errors="replace") for stream in by_stream}


def _failed(failing: set[str], name: str, what: str, exc: Exception) -> None:
    if name not in failing:
        failing.add(name)
        logger.warning("cannot %s %s (%s); retrying", what, name, exc)


def _worked(failing: set[str], name: str, what: str) -> None:
    if name in failing:
        failing.discard(name)
        logger.info("%s %s again", what, name)
