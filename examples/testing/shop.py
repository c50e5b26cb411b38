"""The project under test: a shop whose checkout hands the slow work to aqueue."""

from __future__ import annotations

import aqueue

app = aqueue.App(namespace="shop")
SENT: list[str] = []
"""Receipts "sent" (a real shop would call a mail service)."""


@app.task(queue="emails")
async def send_receipt(order_id: int, email: str) -> str:
    SENT.append(email)
    return f"receipt for order {order_id} sent to {email}"


@app.task
async def fulfil(order_id: int, email: str) -> int:
    """Ships the order, then has its receipt sent: a job that enqueues another."""
    await send_receipt.enqueue(order_id, email)
    return order_id


async def checkout(order_id: int, email: str) -> str:
    """What a web handler would call: the order's fulfilment job, enqueued; its id."""
    job = await fulfil.enqueue(order_id, email)
    return job.id
