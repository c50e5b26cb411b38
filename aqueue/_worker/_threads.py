"""The threads synchronous (``def``) tasks run in: bounded, and never holding the process.

``ThreadPoolExecutor`` joins its threads when the interpreter exits, and a thread cannot be
interrupted: a worker stopped at once (a second Ctrl-C) would say "stopped" and then stay
alive until every running ``def`` task returned, and a third Ctrl-C would interrupt that join
with a traceback. These threads are daemons instead. A task still running when the process
exits stops there, as in a crash; its job was handed back, so it runs again on another worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[[], Any]]


class DaemonThreads(Executor):
    """Runs calls in at most ``limit`` daemon threads, started as they are needed."""

    def __init__(self, limit: int, name: str) -> None:
        self._limit = limit
        self._name = name
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run a task after the worker's threads were closed")
            self._work.put((future, lambda: fn(*args, **kwargs)))
            # A thread that finished a call waits for the next one: start another only
            # when none is idle, as ThreadPoolExecutor does.
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._limit:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            future, call = work
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:  # the caller's to see, as from any executor
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del work, future, call  # keep no task's arguments or result alive while idle
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; idle threads end, busy ones when their call returns."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        work = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if work is not None:
                        work[0].cancel()
            for _ in self._threads:
                self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
