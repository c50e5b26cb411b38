"""A worker process of the CLI's app that records metrics for a supervisor (see
test_prometheus): what ``aqueue worker -p N --metrics-port P`` runs in each child."""

from __future__ import annotations

import asyncio

import aqueue
from aqueue.contrib.prometheus import serve_metrics
from tests.cli_app import app


async def main() -> None:
    # One job at a time: two jobs at once run in two processes.
    worker = aqueue.Worker(app, concurrency=1)
    serve_metrics(worker, 0, supervised=True)
    async with app:
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
