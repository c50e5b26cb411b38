"""docket (PyPI: pydocket): Redis Streams with consumer groups; worker: ``docket worker``.

The worker is docket's own CLI, started through ``python -m peers.docket`` only to make its
loop a uvloop loop as for the other asyncio libraries (docket's CLI calls ``asyncio.run``
before it imports the tasks, so the tasks module cannot set it).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from typing import Any

from docket import Docket

from ._common import SLEEP, URL, record, use_uvloop

DISTRIBUTIONS = ("pydocket", "redis", "hiredis", "uvloop")
HAS_BATCH = True  # Docket.add_many: pipelined chunks
NAME = "bench"


async def noop(i: int) -> None:
    record(i)


async def sleep(i: int) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    record(i, started)


async def echo(i: int) -> int:
    return i + 1


tasks = [noop, sleep, echo]
TASKS = {"noop": noop, "sleep": sleep, "echo": echo}


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "peers.docket",
        "worker",
        "--tasks",
        "peers.docket:tasks",
        "--docket",
        NAME,
        "--url",
        URL,
        "--concurrency",
        str(concurrency),
        "--logging-level",
        "WARNING",
        "--no-schedule-automatic-tasks",
    ]


def settings(kind: str, concurrency: int) -> str:
    return (
        f"`docket worker --concurrency {concurrency}` (uvloop); keeps each execution's state "
        "for its execution_ttl (15 min), results of tasks that return one"
    )


class Client:
    async def open(self) -> None:
        self._docket = Docket(name=NAME, url=URL)
        await self._docket.__aenter__()
        for task in tasks:
            self._docket.register(task)

    async def close(self) -> None:
        await self._docket.__aexit__(None, None, None)

    async def enqueue(self, kind: str, i: int) -> Any:
        return await self._docket.add(TASKS[kind])(i)

    async def enqueue_batch(self, kind: str, indices: list[int]) -> None:
        task = TASKS[kind]
        calls = [self._docket.call(task)(i) for i in indices]
        await self._docket.add_many(calls, chunk_size=len(calls))

    async def result(self, handle: Any, timeout: float) -> Any:
        return await handle.get_result(timeout=timedelta(seconds=timeout))

    async def queued(self) -> int:
        async with self._docket.redis() as redis:
            return int(await redis.xlen(self._docket.stream_key))


if __name__ == "__main__":
    use_uvloop()
    from docket.cli import app

    app(prog_name="docket")
