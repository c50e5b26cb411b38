"""The app the CLI tests run: its URL and namespace come from the environment."""

from __future__ import annotations

import asyncio
import os
import time

import aqueue

app = aqueue.App(namespace=os.environ.get("AQUEUE_TEST_NAMESPACE", "cli"))


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@app.task
def doze_once(seconds: float) -> int:
    """A synchronous task (its thread cannot be interrupted) that sleeps on its first attempt
    only; returns its attempt."""
    attempt = aqueue.current_job().attempt
    if attempt == 1:
        time.sleep(seconds)
    return attempt


not_an_app = 42
