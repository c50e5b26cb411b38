"""What a running task knows about its own job: ``aqueue.current_job()``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from ._hooks import ResourceKey, lookup
from ._redis._errors import translate_errors
from .exceptions import NotInJob

T = TypeVar("T")


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
    _redis: Redis = field(repr=False, compare=False)
    _record: bytes | None = field(repr=False, compare=False)
    _url: str = field(repr=False, compare=False, default="")
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
        """Report how far the job has got; ``job.info()`` shows it.

        Args:
            fraction: From 0.0 to 1.0.
            message: A short human-readable note, e.g. ``"halfway"``.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be between 0.0 and 1.0, not {fraction}")
        if self._record is None:
            return  # result_ttl=0: the job keeps no record to show progress in.
        write = self._redis.hset(
            self._record, mapping={b"progress": repr(fraction), b"progress_message": message}
        )
        # Shielded: a task cancelled by its timeout must not cancel the command mid-reply.
        with translate_errors(self._url):
            await asyncio.shield(write)


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
