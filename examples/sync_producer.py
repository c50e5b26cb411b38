"""Enqueue from synchronous code, as a Django or Flask view does, with aqueue.sync.

    python examples/sync_producer.py     (from the repository's root)

Eight threads (a WSGI server's, say) share one ``SyncApp``: each enqueues a job and waits for
its result, while a worker of its own (``aqueue worker examples.sync_producer:app``, started
here as a subprocess) runs the jobs. Uses the server at AQUEUE_URL when it is set; otherwise
starts an embedded Valkey for the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import aqueue
from aqueue.sync import SyncApp
from aqueue.testing import configured_or_embedded

app = aqueue.App(namespace="sync-example")
queue = SyncApp(app)  # one per process, next to the app: every thread may use it


@app.task(name="word_count")  # named: the worker imports this module under another name
async def word_count(text: str) -> int:
    return len(text.split())


def view(text: str) -> str:
    """What a Django or Flask view would do: enqueue, then wait a bounded time for the result."""
    job = queue.enqueue(word_count, text)  # checked against word_count's signature
    return f"{job.result(timeout=10)} words"


def main() -> None:
    with configured_or_embedded(app):
        worker = subprocess.Popen(
            [sys.executable, "-m", "aqueue", "worker", "examples.sync_producer:app"],
            env={**os.environ, "AQUEUE_URL": app.url},
        )
        try:
            with ThreadPoolExecutor(8) as threads:
                texts = [" ".join(["word"] * n) for n in range(2, 10)]
                print(", ".join(threads.map(view, texts)))
        finally:
            worker.terminate()  # SIGTERM: a graceful stop
            worker.wait(30)
        queue.close()  # or leave it to the exit handler


if __name__ == "__main__":
    main()
