"""``--burst``: a worker that stops once its queues hold no work ready to run.

"Empty" means, for every queue the worker serves: no job waiting in the queue (a paused
queue's waiting jobs are not ready, so they do not count), no delayed job or retry already
due, and nothing running in this worker. Jobs scheduled for later are left for a later run,
and jobs other workers are running are theirs to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .._app import App
from .._redis._errors import translate_errors
from .._redis._keys import Keys

CHECK_INTERVAL = 0.5
"""Seconds between two looks at the queues."""


async def until_drained(app: App, queues: Sequence[Keys], running: Callable[[], int]) -> None:
    """Return once none of ``queues`` holds work ready to run and nothing runs here."""
    while True:
        await asyncio.sleep(CHECK_INTERVAL)
        if running() == 0 and not await _ready_work(app, queues):
            return


async def _ready_work(app: App, queues: Sequence[Keys]) -> bool:
    with translate_errors(app.url):
        seconds, micros = await app.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        for keys in queues:
            if await app.redis.zcount(keys.delayed, "-inf", now_ms):
                return True  # due: the promoter moves it into the queue in a moment
            if await app.redis.exists(keys.paused):
                continue
            if (await app.queue(keys.queue).stats()).queued:
                return True
    return False
