"""dramatiq with its Redis broker and Redis results backend; worker: ``dramatiq``."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from ._common import RESULTS, SLEEP, URL, record, tool

DISTRIBUTIONS = ("dramatiq", "redis", "hiredis")
HAS_BATCH = False
SYNC = True  # the client API blocks; the driver calls it one call at a time
THREADS = 8  # dramatiq's default threads per worker process

broker = RedisBroker(url=URL)
if RESULTS:
    broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(i: int) -> None:
    record(i)


@dramatiq.actor(actor_name="sleep")
def sleep(i: int) -> None:
    started = time.time()
    time.sleep(SLEEP)
    record(i, started)


if RESULTS:

    @dramatiq.actor(actor_name="echo", store_results=True)
    def echo(i: int) -> int:
        return i + 1

    TASKS = {"noop": noop, "sleep": sleep, "echo": echo}
else:
    TASKS = {"noop": noop, "sleep": sleep}


def _threads(kind: str, concurrency: int) -> int:
    return concurrency if kind == "sleep" else THREADS


def worker_argv(kind: str, concurrency: int) -> list[str]:
    threads = str(_threads(kind, concurrency))
    return [tool("dramatiq"), "peers.dramatiq", "--processes", "1", "--threads", threads]


def settings(kind: str, concurrency: int) -> str:
    results = "Results middleware (Redis)" if RESULTS else "no results middleware"
    return f"`--processes 1 --threads {_threads(kind, concurrency)}`, {results}"


class Client:
    async def open(self) -> None:
        broker.client.ping()

    async def close(self) -> None:
        broker.close()

    async def enqueue(self, kind: str, i: int) -> Any:
        return TASKS[kind].send(i)

    async def result(self, handle: Any, timeout: float) -> Any:
        return handle.get_result(block=True, timeout=int(timeout * 1000))

    async def queued(self) -> int:
        return int(broker.client.hlen("dramatiq:default.msgs"))
