"""Which queues a command may name: a typo must not show a made-up queue's zeros (the rule
lives in aqueue/_inspect.py, which the dashboard shares)."""

from __future__ import annotations

import click

from .._app import App
from .._inspect import refuse_unknown_queues


async def confirm_for_known_queue(app: App, queue: str, question: str, *, yes: bool) -> None:
    """Refuse ``queue`` if nothing knows it, then ask ``question`` unless ``yes``: a typo is
    told before any question (a "no" aborts the command)."""
    await refuse_unknown_queues(app, [queue])
    if not yes:
        click.confirm(question, abort=True)
