"""What a running task knows about its own job: ``aqueue.current_job()``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from ._hooks import ResourceKey, lookup
from ._redis import _calls as scripts
from ._redis._direct import Batches
from ._redis._errors import REDIS_ERRORS, translate_errors
from .exceptions import NotInJob

T = TypeVar("T")

logger = logging.getLogger("aqueue.worker")

PROGRESS_INTERVAL = 0.25
"""Seconds between two progress writes of one job: a chatty task cannot flood Redis."""


class ProgressReporter:
    """Writes one job's progress at most every :data:`PROGRESS_INTERVAL`; the latest wins.

    A report within the interval is kept and written when the interval is over, so the
    record always ends up with the last value reported, and the worker flushes what is still
    waiting before it records the job's outcome.
    """

    def __init__(self, calls: Batches, record: bytes, url: str) -> None:
        self._calls = calls
        self._record = record
        self._url = url
        self._written_at = -PROGRESS_INTERVAL
        self._waiting: tuple[float, str] | None = None
        self._later: asyncio.Task[None] | None = None

    async def report(self, fraction: float, message: str) -> None:
        if self._later is None and time.monotonic() - self._written_at >= PROGRESS_INTERVAL:
            await self._write(fraction, message)
            return
        self._waiting = (fraction, message)
        if self._later is None:
            self._later = asyncio.create_task(self._write_later())

    async def flush(self) -> None:
        """Write a report still waiting for its interval, now."""
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._waiting is not None:
            await self._write(*self._waiting)

    async def _write_later(self) -> None:
        await asyncio.sleep(self._written_at + PROGRESS_INTERVAL - time.monotonic())
        self._later = None
        if self._waiting is not None:
            try:
                await self._write(*self._waiting)
            except REDIS_ERRORS as exc:
                logger.warning("cannot record progress of %s: %s", self._record.decode(), exc)

    async def _write(self, fraction: float, message: str) -> None:
        self._waiting = None
        self._written_at = time.monotonic()
        write = self._calls.call(
            scripts.progress(record=self._record, fraction=repr(fraction), message=message)
        )
        # Shielded: a task cancelled by its timeout must not cancel the command mid-reply.
        with translate_errors(self._url):
            await asyncio.shield(write)


@dataclass(frozen=True)
class JobContext:
    """The job a task is running for. Get it with :func:`aqueue.current_job`."""

    id: str
    task: str
    queue: str
    attempt: int
    """1 on the first delivery, 2 on the next, ..."""
    enqueued_at: datetime
    worker: str
    _progress: ProgressReporter | None = field(repr=False, compare=False, default=None)
    _options: bytes | None = field(repr=False, compare=False, default=None)
    _resources: Mapping[ResourceKey[Any], Any] = field(
        repr=False, compare=False, default_factory=dict
    )

    def resource(self, key: ResourceKey[T]) -> T:
        """The resource the worker provides under ``key`` (see ``Worker.provide``).

        Raises:
            ResourceNotProvided: No ``on_worker_start`` hook provided it.
        """
        return lookup(self._resources, key, self.worker)

    @cached_property
    def metadata(self) -> Mapping[str, str]:
        """What enqueue middleware attached to the job (e.g. a tenant or a trace id)."""
        # Decoded on first use only: a job nobody asks about pays nothing. The options
        # field was written by a producer; anything but a mapping of strings is ignored.
        try:
            options = orjson.loads(self._options) if self._options else None
        except orjson.JSONDecodeError:
            options = None
        meta = options.get("meta") if isinstance(options, dict) else None
        if not isinstance(meta, dict):
            return MappingProxyType({})
        return MappingProxyType(
            {k: v for k, v in meta.items() if isinstance(k, str) and isinstance(v, str)}
        )

    async def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job has got; ``job.info()`` and ``job.events()`` show it.

        Reports are written at most every quarter of a second per job; a report within that
        interval replaces the one waiting, so the last one always arrives. Call it as often
        as is convenient.

        Args:
            fraction: From 0.0 to 1.0.
            message: A short human-readable note, e.g. ``"halfway"``.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be between 0.0 and 1.0, not {fraction}")
        if self._progress is not None:  # None: result_ttl=0, the job keeps no record
            await self._progress.report(fraction, message)


_current: ContextVar[JobContext] = ContextVar("aqueue_current_job")


def current_job() -> JobContext:
    """The context of the job the calling task runs for.

    Raises:
        NotInJob: Called outside a task run by a worker.
    """
    try:
        return _current.get()
    except LookupError:
        raise NotInJob(
            "current_job() is only available inside a task run by an aqueue worker"
        ) from None
