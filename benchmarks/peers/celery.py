"""celery with its Redis transport (kombu) and Redis result backend; worker: ``celery worker``."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from ._common import RESULTS, SLEEP, URL, record, tool

DISTRIBUTIONS = ("celery", "kombu", "redis", "hiredis", "billiard")
HAS_BATCH = False
SYNC = True  # the client API blocks; the driver calls it one call at a time
QUEUE = "celery"
PREFETCH_MULTIPLIER = 64  # celery's advice for many short tasks: prefetch more per process

app = Celery("bench", broker=URL, backend=URL if RESULTS else None)
app.conf.update(
    task_ignore_result=not RESULTS,
    worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(i: int) -> None:
    record(i)


@app.task(name="sleep")
def sleep(i: int) -> None:
    started = time.time()
    time.sleep(SLEEP)
    record(i, started)


@app.task(name="echo", ignore_result=False)
def echo(i: int) -> int:
    return i + 1


TASKS = {"noop": noop, "sleep": sleep, "echo": echo}


def _pool(kind: str, concurrency: int) -> list[str]:
    # CPU-light tasks: the default prefork pool with one process per core. Sleeping tasks: the
    # thread pool, the only built-in pool that runs hundreds at once without extra packages.
    if kind == "sleep":
        return ["-P", "threads", "-c", str(concurrency)]
    return ["-P", "prefork", "-c", "2"]


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [
        tool("celery"),
        "-A",
        "peers.celery:app",
        "worker",
        *_pool(kind, concurrency),
        "-l",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def settings(kind: str, concurrency: int) -> str:
    pool = " ".join(_pool(kind, concurrency))
    results = "Redis result backend" if RESULTS else "task_ignore_result, no backend"
    return (
        f"`worker {pool}`, prefetch multiplier {PREFETCH_MULTIPLIER}, "
        f"without gossip/mingle/heartbeat, {results}"
    )


class Client:
    async def open(self) -> None:
        app.connection_for_write().ensure_connection(max_retries=3)

    async def close(self) -> None:
        app.close()

    async def enqueue(self, kind: str, i: int) -> Any:
        return TASKS[kind].delay(i)

    async def result(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    async def queued(self) -> int:
        import redis

        with redis.Redis.from_url(URL) as client:
            return int(client.llen(QUEUE))
