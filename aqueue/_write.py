"""The write path of enqueueing: a call made into an outgoing job, jobs written in chunks of
script calls, and the wait for room in a full queue."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from ._connections import Connections
from ._job import Job
from ._message import LEVEL_MARKS, Outgoing, check_size
from ._middleware import MiddlewareStack
from ._redis import _calls as scripts
from ._redis._errors import translate_errors
from ._redis._keys import GROUP, PRIORITIES, Keys, keys_of, new_job_id
from ._serialize import encode_call
from .exceptions import QueueFull

if TYPE_CHECKING:
    from ._app import App
    from ._task import TaskConfig

# Jobs per call of the enqueue script: its fixed cost (a few us) is paid once per call, and
# each call is written as soon as it is packed, so the server runs it while the next one is
# packed. Small calls keep that overlap tight and never hold up the server for long.
ENQUEUE_CHUNK = 100


class Writer:
    """Writes an app's jobs: what ``task.enqueue``, ``app.enqueue`` and workflows share."""

    __slots__ = ("_app", "_middleware", "connections")

    def __init__(self, app: App, connections: Connections, middleware: MiddlewareStack) -> None:
        self._app = app
        self.connections = connections
        """The app's connections, for the jobs written (and their handles)."""
        self._middleware = middleware

    def outgoing(
        self,
        config: TaskConfig,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        first: int = 0,
    ) -> Outgoing:
        """A job of ``config``'s task with these arguments, bound from its ``first``
        parameter on (1 for a chain's step, whose first argument comes later)."""
        app = self._app
        job_id = new_job_id(config.queue)
        metadata = None
        if self._middleware.enqueue:
            metadata = self._middleware.metadata(job_id, config, args, kwargs)
        types = config.types.arguments
        payload = encode_call(app.serializer, config.name, args, kwargs, types, first=first)
        check_size(job_id, config.name, payload, app.max_payload_size)
        return Outgoing(job_id, payload, config.spec, metadata)

    async def write(
        self, queue: str, batch: list[Outgoing], *, wait: bool = False
    ) -> list[Job[Any]]:
        """Write ``batch``; with ``wait``, wait for room in a full queue (growing pauses).

        Returns a job per item: the one written, or the job already holding its key.
        Only items the full queue refused are sent again: an item after a refused one may
        have been written once room appeared, and must not be written twice.
        """
        written = await self._write_once(queue, batch)
        pause = 0.05
        while None in written:
            waiting = [index for index, job in enumerate(written) if job is None]
            if not wait:
                full = QueueFull(
                    f"queue {queue!r} holds its limit of {self._app.max_queue_length(queue)} "
                    f"jobs; {len(waiting)} of {len(batch)} job(s) were not enqueued. Retry "
                    "later, or enqueue with task.options(wait=True) to wait for room"
                )
                full.jobs = [job for job in written if job is not None]
                raise full
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
            again = await self._write_once(queue, [batch[index] for index in waiting])
            for index, job in zip(waiting, again, strict=True):
                written[index] = job
        return cast("list[Job[Any]]", written)

    async def _write_once(self, queue: str, batch: list[Outgoing]) -> list[Job[Any] | None]:
        """One round trip; None for each item the full queue refused."""
        with translate_errors(self._app.url):
            replies = await self.connections.direct.run(self._enqueue_calls(queue, batch))
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        added = itertools.chain.from_iterable(replies)
        return [self._written(queue, o, reply) for o, reply in zip(batch, added, strict=True)]

    def _enqueue_calls(self, queue: str, batch: list[Outgoing]) -> Iterator[scripts.Call]:
        """The enqueue script's calls for ``batch``, made one by one as they are written."""
        app = self._app
        keys = keys_of(app.namespace, queue)
        limit = app.max_queue_length(queue)
        streams, stream_levels = _streams_written(keys, batch, counted=limit > 0)
        for start in range(0, len(batch), ENQUEUE_CHUNK):
            yield scripts.enqueue(
                delayed=keys.delayed,
                levels=keys.levels,
                events=keys.events,
                streams=streams,
                limit=limit,
                events_limit=app.events_limit,
                stream_levels=stream_levels,
                group=GROUP,
                jobs=[o.script_job(keys) for o in batch[start : start + ENQUEUE_CHUNK]],
            )

    def _written(self, queue: str, outgoing: Outgoing, reply: int | bytes) -> Job[Any] | None:
        """The job that stands for ``outgoing`` (of ``queue``) after the enqueue script replied
        ``reply``."""
        if reply == 1:
            keeps = outgoing.spec.result_ttl > 0
            return Job(
                self._app,
                self.connections,
                outgoing.job_id,
                keeps_result=keeps,
                task=outgoing.spec.task,
                queue=queue,
            )
        if reply == 0:
            return None  # refused: the queue holds its limit
        # options(key=...): the job holding the key (in the same queue), of the same task.
        holder = bytes(reply).decode()
        return Job(self._app, self.connections, holder, task=outgoing.spec.task, queue=queue)


def _streams_written(
    keys: Keys, batch: list[Outgoing], *, counted: bool
) -> tuple[list[bytes], str]:
    """The streams of the levels ``batch`` is written to (every level's when a length limit
    counts them all), and those levels as the enqueue script names them."""
    if counted:
        levels: Iterable[int] = PRIORITIES
    elif len(batch) == 1:  # most enqueues: no set to build
        level = batch[0].spec.priority
        return [keys.streams[level]], LEVEL_MARKS[level]
    else:
        levels = {outgoing.spec.priority for outgoing in batch}
    return [keys.streams[level] for level in levels], "".join(
        [LEVEL_MARKS[level] for level in levels]
    )
