"""Sending commands to live workers (``aqueue control``) and collecting their answers."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from ._redis._errors import translate_errors
from ._registry import control_channel, control_replies
from .exceptions import AqueueError

if TYPE_CHECKING:
    from ._app import App

COMMANDS = ("ping", "shutdown")


class NoSuchWorker(AqueueError, LookupError):
    """A command named a worker that is not alive (see ``aqueue workers``)."""


async def send_command(
    app: App, command: str, workers: Sequence[str] | None, timeout: float
) -> tuple[dict[str, str], list[str]]:
    """Send ``command`` to ``workers`` (None: every live one) and wait for their answers.

    Returns:
        Each answering worker's answer, and the workers that did not answer in ``timeout``.

    Raises:
        NoSuchWorker: a worker named is not alive.
    """
    live = [info.id for info in await app.workers()]
    if workers is None:
        targets = live
    else:
        dead = [name for name in workers if name not in live]
        if dead:
            raise NoSuchWorker(
                f"no live worker named {', '.join(dead)}; `aqueue workers` lists the live ones"
            )
        targets = list(workers)
    request = os.urandom(8).hex()
    message: dict[str, Any] = {"id": request, "command": command, "workers": workers}
    answers: dict[str, str] = {}
    replies = control_replies(app.namespace, request)
    deadline = time.monotonic() + timeout
    with translate_errors(app.url):
        await app.redis.publish(control_channel(app.namespace), orjson.dumps(message))
        while len(answers) < len(targets):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            popped = cast("tuple[bytes, bytes] | None", await app.redis.blpop([replies], left))
            if popped is None:
                break
            answer: Any = orjson.loads(popped[1])
            answers[str(answer["worker"])] = str(answer["answer"])
        await app.redis.delete(replies)
    return answers, [name for name in targets if name not in answers]
