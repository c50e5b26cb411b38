"""Shared by the tests of the web helpers: a job that waits for its stream to be seen."""

from __future__ import annotations

import asyncio

import aqueue


def task_stopping_halfway(app: aqueue.App) -> asyncio.Event:
    """Register ``slow``: it reports 0.5 ("halfway"), then waits for the event this returns
    (set it once a client saw that progress), then returns ``"done"``."""
    seen_halfway = asyncio.Event()

    @app.task(name="slow")
    async def slow() -> str:
        await aqueue.current_job().progress(0.5, "halfway")
        await seen_halfway.wait()
        return "done"

    return seen_halfway
