"""Which queues a command may name: a typo must not show a made-up queue's zeros.

A queue is known when the app names it (its default, its tasks' and routes' queues), when a
live worker serves it, or when it has keys in Redis (jobs, dead letters, delayed jobs, a
pause flag, workers that served it lately). A queue that merely is empty is known by its
stream, which stays once a worker has read it.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from .._app import App
from .._events import named_queues
from .._redis._errors import translate_errors
from .._redis._keys import keys_of
from ..exceptions import AqueueError


class UnknownQueue(AqueueError):
    """A command named a queue that nothing knows (see the module docstring)."""


async def refuse_unknown_queues(app: App, names: Sequence[str]) -> None:
    """Raise :class:`UnknownQueue` for the first of ``names`` that no one knows.

    Costs nothing for the queues the app names; the others cost a read of the workers and
    one ``EXISTS`` each.
    """
    named = set(named_queues(app))
    strays = [name for name in names if name not in named]
    if not strays:
        return
    served = {queue for worker in await app.workers() for queue in worker.queues}
    for name in strays:
        if name in served:
            continue
        keys = keys_of(app.namespace, name)
        with translate_errors(app.url):
            found = await app.redis.exists(
                keys.stream, keys.levels, keys.delayed, keys.dead, keys.paused, keys.workers
            )
        if not found:
            known = ", ".join(sorted(named | served))
            raise UnknownQueue(
                f"no queue {name!r} in namespace {app.namespace!r}: the app does not name it, "
                f"no live worker serves it and Redis holds nothing of it. Known queues: {known}"
                " (check the spelling, and the namespace)"
            )


async def confirm_for_known_queue(app: App, queue: str, question: str, *, yes: bool) -> None:
    """Refuse ``queue`` if nothing knows it, then ask ``question`` unless ``yes``: a typo is
    told before any question (a "no" aborts the command)."""
    await refuse_unknown_queues(app, [queue])
    if not yes:
        click.confirm(question, abort=True)
