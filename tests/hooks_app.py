"""An app whose worker cannot start: its start hook fails (run by the CLI in test_hooks)."""

from __future__ import annotations

import os

import aqueue

app = aqueue.App(namespace=os.environ.get("AQUEUE_TEST_NAMESPACE", "hooks"))


@app.on_worker_start
async def open_db(worker: aqueue.Worker) -> None:
    raise ConnectionRefusedError("database at db:5432 refused the connection")
