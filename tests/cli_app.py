"""The app the CLI tests run: its URL and namespace come from the environment."""

from __future__ import annotations

import asyncio
import os

import aqueue

app = aqueue.App(namespace=os.environ.get("AQUEUE_TEST_NAMESPACE", "cli"))


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


not_an_app = 42
