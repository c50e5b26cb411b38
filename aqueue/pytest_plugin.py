"""A pytest plugin for the tests of projects that use aqueue: a real server, a clean namespace
per test, a worker, and helpers to run what was enqueued and to check it.

It is opt-in, so that installing aqueue changes no one's test runs: enable it with
``-p aqueue.pytest_plugin`` (e.g. in ``addopts``) or ``pytest_plugins = ["aqueue.pytest_plugin"]``
in the root ``conftest.py``, and name your app in the pytest configuration::

    [tool.pytest.ini_options]
    addopts = ["-p", "aqueue.pytest_plugin"]
    aqueue_app = "myproject.tasks:app"

Fixtures:

- ``aqueue_server`` (session): a Valkey server of its own on a loopback port
  (:meth:`aqueue.testing.RedisServer.valkey`).
- ``aqueue_namespace``: a namespace no other test uses.
- ``aqueue_app``: your app, pointed at that server and namespace for the test (and back after).
  Override it to build the app another way, e.g. from a factory.
- ``aqueue_worker``: a worker running next to the test, on every queue of the app.
- ``aqueue_jobs``: :class:`EnqueuedJobs`: what the test enqueued, and
  :meth:`~EnqueuedJobs.run_until_empty` to run it all.

Async fixtures need pytest-asyncio: ``pip install 'aqueue-redis[testing]'``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, ParamSpec

import click
import pytest

from ._version import pip_install

try:
    import pytest_asyncio
except ImportError as exc:
    raise ImportError(
        f"aqueue.pytest_plugin needs pytest-asyncio: {pip_install('testing')}"
    ) from exc

from ._app import App
from ._middleware import Middleware, OutgoingJob
from ._task import Task
from ._worker import Worker
from .cli import load_app
from .testing import RedisServer

__all__ = ["EnqueuedJobs"]

P = ParamSpec("P")

_POLL = 0.02
"""Seconds between two looks at the queues while running them until they are empty."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("aqueue_app", "the aqueue.App the tests use, as 'module:attribute'")


class _Recorder(Middleware):
    """Notes each job its app enqueues, for the current test's :class:`EnqueuedJobs`."""

    def __init__(self) -> None:
        self.jobs: list[OutgoingJob] = []

    def on_enqueue(self, job: OutgoingJob) -> None:
        self.jobs.append(job)


# One recorder per app, added once: an app's middleware cannot be removed, and tests share
# the app of the project under test.
_recorders: weakref.WeakKeyDictionary[App, _Recorder] = weakref.WeakKeyDictionary()


class EnqueuedJobs:
    """What the test enqueued through its app (the code under test's jobs, and those its
    tasks enqueued while they ran), and a way to run them all."""

    def __init__(self, app: App, recorder: _Recorder) -> None:
        self.app = app
        self._recorder = recorder

    @property
    def enqueued(self) -> list[OutgoingJob]:
        """Every job enqueued since the test began, in order: ``task``, ``args``, ``kwargs``,
        ``queue``, ``id``, ..."""
        return list(self._recorder.jobs)

    def of(self, task: Task[Any, Any] | str) -> list[OutgoingJob]:
        """The jobs enqueued of ``task`` (a task or a task name), in order."""
        name = task if isinstance(task, str) else task.name
        return [job for job in self._recorder.jobs if job.task == name]

    def assert_enqueued(self, task: Task[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Assert that a job of ``task`` was enqueued with exactly these arguments."""
        calls = [(job.args, dict(job.kwargs)) for job in self.of(task)]
        if (args, kwargs) not in calls:
            raise AssertionError(
                f"no job of {task.name} was enqueued with args={args!r} kwargs={kwargs!r}; "
                f"its jobs: {calls or 'none'}"
            )

    async def run_until_empty(self, timeout: float = 10.0) -> None:
        """Run jobs with a worker of its own until no queue the app knows (nor one a job was
        enqueued to) holds a job that is queued, scheduled or running.

        Jobs that the jobs enqueue are run too; a delayed job or a retry is waited for.

        Raises:
            TimeoutError: Jobs are left after ``timeout`` seconds (they are listed).
        """
        queues = _queues_of(self.app, also=(job.queue for job in self._recorder.jobs))
        deadline = time.monotonic() + timeout
        async with Worker(self.app, queues=queues, grace_period=0):
            while left := await self._left(queues):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"jobs are left after {timeout:g} s: {', '.join(left)}; a task may "
                        "hang, be delayed, or keep retrying"
                    )
                await asyncio.sleep(_POLL)

    async def _left(self, queues: list[str]) -> list[str]:
        """``"<queue>: <n> queued, ..."`` for each queue that is not empty."""
        left = []
        for queue in queues:
            stats = await self.app.queue(queue).stats()
            if stats.queued or stats.scheduled or stats.running:
                left.append(
                    f"{queue}: {stats.queued} queued, {stats.scheduled} scheduled, "
                    f"{stats.running} running"
                )
        return left


@pytest.fixture(scope="session")
def aqueue_server() -> Iterator[RedisServer]:
    """A Valkey server for the session; each test keeps to its own namespace."""
    with RedisServer.valkey() as server:
        yield server


@pytest.fixture
def aqueue_namespace() -> str:
    """A namespace of the test's own: keys of other tests are never seen."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def aqueue_app(
    request: pytest.FixtureRequest, aqueue_server: RedisServer, aqueue_namespace: str
) -> AsyncIterator[App]:
    """The app named by the ``aqueue_app`` setting, on the test server and namespace."""
    target = request.config.getini("aqueue_app")
    if not target:
        raise pytest.UsageError(
            "aqueue.pytest_plugin: name your app with aqueue_app = 'module:attribute' in the "
            "pytest configuration, or override the aqueue_app fixture"
        )
    app = _load(str(target))
    url, namespace = app.url, app.namespace
    await app.close()  # connections opened before the test go to the app's real server
    app.url, app.namespace = aqueue_server.url, aqueue_namespace
    try:
        yield app
    finally:
        await app.close()
        app.url, app.namespace = url, namespace


@pytest_asyncio.fixture
async def aqueue_worker(aqueue_app: App) -> AsyncIterator[Worker]:
    """A worker running during the test, on every queue the app's tasks and routes name."""
    async with Worker(aqueue_app, queues=_queues_of(aqueue_app), grace_period=1) as worker:
        yield worker


@pytest.fixture
def aqueue_jobs(aqueue_app: App) -> Iterator[EnqueuedJobs]:
    """The jobs the test enqueues through ``aqueue_app``; see :class:`EnqueuedJobs`."""
    recorder = _recorders.get(aqueue_app)
    if recorder is None:
        recorder = _recorders[aqueue_app] = _Recorder()
        aqueue_app.add_middleware(recorder)
    recorder.jobs.clear()
    yield EnqueuedJobs(aqueue_app, recorder)
    recorder.jobs.clear()


def _queues_of(app: App, also: Iterable[str] = ()) -> list[str]:
    """The queues the app's tasks and routes name, its default queue, and ``also``."""
    tasks = (task._config.queue for task in app.tasks.values())
    return sorted({app.default_queue, *app.routes.values(), *tasks, *also})


def _load(target: str) -> App:
    """The App that ``module:attribute`` names (as the CLI finds it)."""
    try:
        return load_app(target)
    except click.BadParameter as exc:
        raise pytest.UsageError(f"aqueue_app = {target!r}: {exc.message}") from None
