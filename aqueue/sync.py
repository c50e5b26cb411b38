"""Producing from code with no running event loop: Django and Flask views, scripts, shells.

```python
from aqueue.sync import SyncApp

queue = SyncApp(app)
job = queue.enqueue(add, 2, 3)       # checked against add's signature, like add.enqueue
job.status()                         # aqueue.JobStatus
assert job.result(timeout=10) == 5
```

Every :class:`SyncApp` of a process shares one event loop, run by one daemon thread that the
first call starts; each call is handed to it with ``asyncio.run_coroutine_threadsafe`` and the
calling thread waits for the answer. Any number of threads may call at once: they share the
app's connection pool, and no call starts a loop or connects anew. At exit the apps'
connections are closed and the thread stops.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from ._app import App, connections_of
from ._job import Job, JobInfo, JobStatus
from ._task import Task
from .exceptions import ConfigurationError

__all__ = ["SyncApp", "SyncJob"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0
"""Seconds the exit handler waits for the apps' connections to close and the thread to end."""


class _LoopThread:
    """The event loop every :class:`SyncApp` of the process runs its calls on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._apps: set[App] = set()
        """The apps that ran calls here: their connections belong to this loop."""
        self._pid = 0
        """The process that started the loop: a forked child has no thread to run it."""
        self._exit_handler = False

    def run(self, app: App, call: Coroutine[Any, Any, T]) -> T:
        """Run ``call`` (which uses ``app``) on the loop and wait for its outcome."""
        try:
            loop = self._loop_for(app)
        except BaseException:
            call.close()  # never awaited: closed, so that Python does not warn about it
            raise
        future: Future[T] = asyncio.run_coroutine_threadsafe(call, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C while waiting: the call stops too
            raise

    def _loop_for(self, app: App) -> asyncio.AbstractEventLoop:
        """The loop to run ``app``'s calls on, its thread started on first use."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "aqueue.sync blocks its caller: it is for code without a running event loop. "
                "In async code, await the app's own methods (await task.enqueue(...))"
            )
        if self._loop is not None and self._pid != os.getpid():
            # The child of a fork has the parent's loop and connections, but not its thread.
            raise ConfigurationError(
                "aqueue.sync was first used before this process forked: make the first call "
                "in each worker process (not at import time under gunicorn --preload, say)"
            )
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="aqueue-sync", daemon=True)
                thread.start()
                if not self._exit_handler:
                    atexit.register(self.close)
                    self._exit_handler = True
                # The loop last: the fork check above reads it without the lock, and must
                # find the pid of a loop it sees.
                self._pid, self._thread, self._loop = os.getpid(), thread, loop
            loop = self._loop
            # An app's connections belong to the loop that opened them: the same App used on a
            # loop of its own meanwhile (an embedded worker) would share sockets between loops.
            if connections_of(app).loop not in (None, loop):
                raise ConfigurationError(
                    f"{app!r} is in use on another event loop; give the synchronous code an "
                    "aqueue.App of its own (with the same URL and namespace)"
                )
            self._apps.add(app)
            return loop

    def close(self) -> None:
        """Close every app's connections, then stop the loop and its thread.

        Registered with ``atexit``; a later call starts a fresh loop. A forked child leaves
        them alone: they are its parent's.
        """
        if self._pid != os.getpid():
            return
        with self._lock:
            loop, thread, apps = self._loop, self._thread, list(self._apps)
            self._loop = None
            self._apps.clear()
        if loop is None or thread is None:
            return
        for app in apps:
            closing = asyncio.run_coroutine_threadsafe(app.close(), loop)
            closing.result(_CLOSE_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_TIMEOUT)
        if not thread.is_alive():
            loop.close()


_loop_thread = _LoopThread()


class SyncJob(Generic[R]):
    """A job, for code with no running event loop: :class:`aqueue.Job`'s methods, blocking.

    Attributes:
        job: The asynchronous handle, e.g. to pass to ``after=``.
    """

    __slots__ = ("_app", "job")

    def __init__(self, app: App, job: Job[R]) -> None:
        self._app = app
        self.job = job

    def __repr__(self) -> str:
        return f"<SyncJob {self.job.id}>"

    @property
    def id(self) -> str:
        """The job's id, ``"<queue>:<hex>"``."""
        return self.job.id

    @property
    def queue(self) -> str:
        """The queue the job was enqueued to."""
        return self.job.queue

    def status(self) -> JobStatus:
        """The job's current status (see :meth:`aqueue.Job.status`)."""
        return _loop_thread.run(self._app, self.job.status())

    def info(self) -> JobInfo:
        """Everything the job's record says (see :meth:`aqueue.Job.info`)."""
        return _loop_thread.run(self._app, self.job.info())

    def result(self, timeout: float | timedelta | None = None) -> R:
        """Wait for the job to end and return its value (see :meth:`aqueue.Job.result`).

        Bound the wait with ``timeout`` in a web request: the calling thread blocks.
        """
        return _loop_thread.run(self._app, self.job.result(timeout))

    def cancel(self) -> bool:
        """Cancel the job unless it already ended (see :meth:`aqueue.Job.cancel`)."""
        return _loop_thread.run(self._app, self.job.cancel())


class SyncApp:
    """An :class:`aqueue.App` for code with no running event loop.

    Args:
        app: The app whose tasks are enqueued. Its connections then belong to the shared
            background loop: use it from async code in the same process no more (another
            ``App`` with the same URL and namespace can be used there).
    """

    __slots__ = ("app",)

    def __init__(self, app: App) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"<SyncApp of {self.app!r}>"

    def enqueue(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncJob[R]:
        """Enqueue a job of ``task`` (or of ``task.options(...)``): ``task.enqueue``, blocking.

        Raises:
            InvalidArguments: The arguments do not bind to the task's signature.
            ConfigurationError: ``task`` belongs to another app.
        """
        if task._app is not self.app:
            raise ConfigurationError(
                f"task {task.name!r} belongs to another app than {self.app!r}: "
                "enqueue it through a SyncApp of its own app"
            )
        return SyncJob(self.app, self.run(task.enqueue(*args, **kwargs)))

    def enqueue_by_name(self, task_name: str, /, *args: Any, **kwargs: Any) -> SyncJob[Any]:
        """Enqueue by task name, without the task's code (see :meth:`aqueue.App.enqueue`)."""
        return SyncJob(self.app, self.run(self.app.enqueue(task_name, *args, **kwargs)))

    def job(self, job_id: str) -> SyncJob[Any]:
        """A handle on the job with this id (e.g. stored with an order)."""
        return SyncJob(self.app, self.app.job(job_id))

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run any call of the app on the shared loop and return its outcome, e.g.
        ``queue.run(app.queue("emails").stats())``."""
        return _loop_thread.run(self.app, call)

    def close(self) -> None:
        """Close the app's connections now rather than at exit (it connects again if used)."""
        self.run(self.app.close())
