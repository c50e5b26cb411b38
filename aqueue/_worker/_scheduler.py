"""Firing periodic tasks from every worker, each tick exactly once.

There is no beat process: every worker walks the schedules on the Redis server's clock and
enqueues each due tick under a uniqueness key made of the schedule and the tick time. The
enqueue script claims that key atomically, so whichever worker gets there first adds the
job and the others get the same job back. The key outlives the job by a day, so a worker
that looks at the tick late cannot add it a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from .._app import App
from .._redis._backoff import Backoff
from .._schedule import Schedule, last_tick_key
from ..exceptions import AqueueError

logger = logging.getLogger("aqueue.scheduler")

TICK_KEY_TTL = 24 * 3600
"""Seconds a tick's key outlives its job."""
LOOK_INTERVAL = 10.0
"""Longest sleep between looks at the schedules. Each look costs a TIME, and the sleep ends at
the next tick anyway (measured on the server's clock), so the bound only limits how long a
local clock's drift can go unnoticed: an idle worker must cost Redis next to nothing."""


class Scheduler:
    """Enqueues the app's periodic tasks when their ticks come."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._schedules = app.schedules
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop after the command in flight."""
        self._stopping.set()

    async def run(self) -> None:
        """Fire ticks until :meth:`stop`."""
        if not self._schedules:
            return
        backoff = Backoff(logger, "fire periodic tasks")
        cursors: dict[str, float] | None = None
        while not self._stopping.is_set():
            try:
                now = await self._server_now()
                if cursors is None:
                    cursors = await self._start(now)
                for schedule in self._schedules:
                    cursors[schedule.task_name] = await self._fire_due(
                        schedule, cursors[schedule.task_name], now
                    )
            except (RedisError, AqueueError) as exc:
                await backoff.failed(exc)  # the tick stays due: it is tried again
                continue
            backoff.succeeded()
            upcoming = min(s.next_after(cursors[s.task_name]) for s in self._schedules)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), max(0.0, min(LOOK_INTERVAL, upcoming - now))
                )

    async def _start(self, now: float) -> dict[str, float]:
        # Ticks before this worker started are other workers' to fire. Those missed while
        # no worker ran are fired once (the latest) only under the run_once policy.
        cursors = {}
        for schedule in self._schedules:
            cursors[schedule.task_name] = now
            if schedule.misfire != "run_once":
                continue
            last = await self._app.redis.get(last_tick_key(self._app.namespace, schedule.task_name))
            missed = schedule.latest_until(now)
            if last is not None and missed > float(last):
                logger.info("%s missed ticks while no worker ran: once now", schedule.task_name)
                await self._fire(schedule, missed)
        return cursors

    async def _fire_due(self, schedule: Schedule, cursor: float, now: float) -> float:
        # Only the latest due tick: after a stall (a paused process, a Redis outage) the
        # ticks in between are skipped, not fired in a burst.
        latest = schedule.latest_until(now)
        if latest <= cursor:
            return cursor
        await self._fire(schedule, latest)
        return latest

    async def _fire(self, schedule: Schedule, tick: float) -> None:
        task = self._app.tasks[schedule.task_name]
        key = f"tick:{schedule.task_name}:{schedule.tick_id(tick)}"
        try:
            job = await task.options(key=key, key_ttl=TICK_KEY_TTL).enqueue(
                *schedule.args, **schedule.kwargs
            )
        except (RedisError, AqueueError):
            raise
        except Exception:
            # E.g. enqueue middleware that refuses the tick: skip it, never stop the scheduler
            # (also for the missed tick fired at start).
            logger.exception("cannot fire %s; skipping this tick", schedule.task_name)
            return
        await self._app.redis.set(
            last_tick_key(self._app.namespace, schedule.task_name), repr(tick), ex=30 * 24 * 3600
        )
        logger.debug("%s tick %s: job %s", schedule.task_name, tick, job.id)

    async def _server_now(self) -> float:
        # Due-ness is read from the server's clock, so a skewed worker cannot fire early.
        seconds, micros = await self._app.redis.time()
        return float(seconds) + micros / 1_000_000
