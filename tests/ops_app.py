"""The app the monitoring tests run in worker processes: a short lease, so workers beat
every half second and a dead one is gone within a couple of seconds."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import aqueue

app = aqueue.App(namespace=os.environ.get("AQUEUE_TEST_NAMESPACE", "ops"), lease=1.5)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def boom() -> None:
    raise ValueError("boom")


@app.task
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@app.task(queue="other")
async def elsewhere() -> str:
    return "done"


@app.task
async def price(amount: str) -> Decimal:
    """A result orjson does not encode: it is shown as the JSON its annotation sends."""
    return Decimal(amount)
