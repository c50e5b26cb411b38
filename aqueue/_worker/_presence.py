"""What a worker tells the registry about itself (see ``aqueue/_registry.py``).

The counters are bumped on the event loop and read by the lease thread at each beat. Only
ints are replaced and the per-queue dict never changes size after construction, so the thread
reads them safely without a lock.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from .._redis._wire import PROTOCOL_VERSION
from .._registry import WorkerInfo, encode_record, registry_index, registry_record
from .._version import __version__
from ._outcome import Action, Outcome

FAILED_RUNS = frozenset({"failed", "scheduled"})
"""Outcome statuses of a run that raised: failed for good, or scheduled for a retry."""


class Presence:
    """A worker's record in the registry, kept current by its lease thread."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        tasks: Sequence[str],
        running: Callable[[], int],
    ) -> None:
        self.name = name
        self.index = registry_index(namespace)
        self.record = registry_record(namespace, name)
        self._queues = tuple(queues)
        self._concurrency = concurrency
        self._tasks = tuple(sorted(tasks))
        self._running = running
        self._started = datetime.now(UTC)
        self._host = socket.gethostname()
        self.processed = 0
        self.failed = 0
        self._by_queue = dict.fromkeys(self._queues, 0)
        self._last: tuple[float, dict[str, int]] = (time.monotonic(), dict(self._by_queue))

    def ran(self, outcome: Outcome) -> None:
        """Count a job that ran to an outcome (a hand-back at shutdown is no run)."""
        if outcome.action is Action.REQUEUE:
            return
        self.processed += 1
        if outcome.status in FAILED_RUNS:
            self.failed += 1
        queue = outcome.delivery.keys.queue
        if queue in self._by_queue:
            self._by_queue[queue] += 1

    def snapshot(self) -> bytes:
        """The record as of now, with each queue's rate since the previous snapshot."""
        now, counts = time.monotonic(), dict(self._by_queue)
        then, before = self._last
        self._last = (now, counts)
        elapsed = max(now - then, 1e-3)
        rates = {q: round((counts[q] - before[q]) / elapsed, 2) for q in self._queues}
        return encode_record(
            WorkerInfo(
                id=self.name,
                host=self._host,
                pid=os.getpid(),
                queues=self._queues,
                concurrency=self._concurrency,
                running=self._running(),
                processed=self.processed,
                failed=self.failed,
                started=self._started,
                version=__version__,
                tasks=self._tasks,
                seen=datetime.now(UTC),
                rates=rates,
                protocol=PROTOCOL_VERSION,
            )
        )
