"""Liveness from a thread of its own: heartbeats, and lease renewal of every job in flight.

A task that blocks the event loop (CPU-bound code in an async task, a sync call that should
have been a thread) must not make its job look abandoned: if renewal ran on the loop, a long
block would let the lease lapse and another worker would run the job a second time. This
thread keeps renewing while the loop is stuck, and says when the loop lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence

from redis import Redis as SyncRedis

from .._redis._keys import GROUP, Keys
from .._redis._scripts import HEARTBEAT, RENEW

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
        queues: Sequence[Keys],
        consumer: str,
        lease: float,
        in_flight: dict[tuple[bytes, bytes], Keys],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._client = SyncRedis.from_url(
            url, socket_timeout=max(1.0, lease / 3), socket_connect_timeout=max(1.0, lease / 3)
        )
        self._queues = queues
        self._consumer = consumer
        self._lease = lease
        self._in_flight = in_flight
        self._loop = loop
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"aqueue-lease-{consumer}", daemon=True
        )
        self._failing = False
        self._last_pong = time.monotonic()
        self.lost = 0
        """Jobs this worker was still running when another worker had claimed them."""

    def start(self) -> None:
        """Beat once now (so the worker is counted at once), then keep going in the thread."""
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and deregister the worker. Blocks: call it through a thread."""
        self._stopping.set()
        self._thread.join()
        try:
            for keys in self._queues:
                HEARTBEAT.call_sync(self._client, [keys.workers], [self._consumer, ""])
        except Exception as exc:
            logger.warning("could not deregister worker %s: %s", self._consumer, exc)
        self._client.close()

    def _run(self) -> None:
        while not self._stopping.wait(self._lease / 3):
            self._check_loop()
            self._beat()

    def _check_loop(self) -> None:
        lag = time.monotonic() - self._last_pong
        if lag > self._lease / 3 + LOOP_LAG_WARNING:
            logger.warning(
                "the event loop has not answered for %.1f s: a task blocks it (use a sync "
                "task or a thread for blocking work); leases are still renewed",
                lag,
            )
        with contextlib.suppress(RuntimeError):  # the loop is closed: the worker is stopping
            self._loop.call_soon_threadsafe(self._pong)

    def _pong(self) -> None:
        self._last_pong = time.monotonic()

    def _beat(self) -> None:
        try:
            forget_after = int(self._lease * 10_000)
            for keys in self._queues:
                HEARTBEAT.call_sync(self._client, [keys.workers], [self._consumer, forget_after])
            self._renew()
        except Exception as exc:
            # Whatever the server answers (OOM at maxmemory, WRONGTYPE, a lost connection),
            # this thread must go on: if it died, every job of this worker would lose its
            # lease and run a second time elsewhere.
            if not self._failing:
                logger.warning("cannot renew leases (%s); retrying", exc)
            self._failing = True
            return
        if self._failing:
            logger.info("renewing leases again")
            self._failing = False

    def _renew(self) -> None:
        by_stream: dict[bytes, list[bytes]] = {}
        for stream, entry_id in self._in_flight.copy():
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            for start in range(0, len(ids), RENEW_CHUNK):
                chunk = ids[start : start + RENEW_CHUNK]
                lost = RENEW.call_sync(self._client, [stream], [GROUP, self._consumer, *chunk])
                if lost:
                    self.lost += len(lost)
                    logger.warning(
                        "%d running job(s) were claimed by another worker (this worker was "
                        "unresponsive past its lease); their outcomes from here will be refused",
                        len(lost),
                    )
