"""What every adapter shares: settings from the environment and the run recorder.

A peer module is imported twice: by the driver (to enqueue) and by the library's own worker
process (to run the tasks). Both read their settings from ``BENCH_*`` environment variables set
by the driver, so the two sides always agree:

- ``BENCH_REDIS_URL``: the fresh server of this run (``redis+cluster://`` for a local Redis
  Cluster, aqueue only: benchmarks/scaling.py's ``--cluster``);
- ``BENCH_CONCURRENCY``: how many tasks one worker process runs at once;
- ``BENCH_RESULTS``: ``1`` to keep results the library's default way, ``0`` for its
  fire-and-forget mode (where it has one);
- ``BENCH_SLEEP``: seconds the ``sleep`` task waits.

Correctness is checked the same way for every library: each task body calls :func:`record`,
which buffers the task's index in the worker process; a daemon thread pushes the buffer to
Redis every few milliseconds as one comma-separated string (RPUSH, INCRBY of a counter, and
the earliest start and latest end seen in this process). The driver then checks that every
index ran exactly once and takes the wall time from the first task's start to the last task's
end, so worker start-up is not counted and the cost per task is a list append under a lock,
the same for every library.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "100"))
RESULTS = os.environ.get("BENCH_RESULTS", "1") == "1"
SLEEP = float(os.environ.get("BENCH_SLEEP", "0.05"))

RUNS_KEY = "bench:runs"
COUNT_KEY = "bench:count"
SPAN_KEY = "bench:span"
FLUSH_EVERY = 0.005
CLUSTER_SCHEME = "redis+cluster://"


def connect(url: str, api: Any, **options: Any) -> Any:
    """A client of ``url`` from redis-py's ``api`` (``redis`` or ``redis.asyncio``), with
    redis-py's ``options``: for a ``redis+cluster://h1:p1,...`` URL, its cluster client,
    which finds the rest from the first node."""
    if not url.startswith(CLUSTER_SCHEME):
        return api.Redis.from_url(url, **options)
    host, port = url.removeprefix(CLUSTER_SCHEME).split(",")[0].rsplit(":", 1)
    return api.RedisCluster(host=host, port=int(port), **options)


def tool(name: str) -> str:
    """The console script ``name`` installed next to the running interpreter."""
    import sys

    return str(Path(sys.executable).parent / name)


def use_uvloop() -> None:
    """Make new asyncio loops uvloop loops, as every async peer recommends for speed."""
    try:
        import asyncio

        import uvloop
    except ImportError:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._first = 0.0
        self._last = 0.0
        self._pid = 0

    def record(self, index: int, started: float | None) -> None:
        now = time.time()
        with self._lock:
            if self._pid != os.getpid():  # first call in this process (or after a fork)
                self._start()
            self._ids.append(index)
            begun = now if started is None else started
            if not self._first or begun < self._first:
                self._first = begun
            if now > self._last:
                self._last = now

    def _start(self) -> None:
        self._pid = os.getpid()
        self._ids = []
        self._first = self._last = 0.0
        threading.Thread(target=self._flush_forever, name="bench-recorder", daemon=True).start()

    def _flush_forever(self) -> None:
        import redis

        client = connect(URL, redis, socket_timeout=None)  # as the driver's: see there
        pid = self._pid
        while True:
            time.sleep(FLUSH_EVERY)
            with self._lock:
                ids, self._ids = self._ids, []
                first, last = self._first, self._last
            if not ids:
                continue
            pipe = client.pipeline(transaction=False)
            # The span first: once the driver sees the count, the times that go with it are in.
            # The ids go as one string per flush: packing thousands of arguments would cost
            # the worker more than the tasks it runs.
            pipe.hset(SPAN_KEY, mapping={f"{pid}:first": repr(first), f"{pid}:last": repr(last)})
            pipe.rpush(RUNS_KEY, ",".join(map(str, ids)))
            pipe.incrby(COUNT_KEY, len(ids))
            pipe.execute()


_recorder = _Recorder()


def record(index: int, started: float | None = None) -> None:
    """Note that task ``index`` ran (``started``: when its body began, default now)."""
    _recorder.record(index, started)
