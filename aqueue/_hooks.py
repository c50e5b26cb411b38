"""Worker lifecycle hooks and the typed resources they provide to tasks.

``@app.on_worker_start`` hooks set up what tasks share (a database pool, an HTTP client) and
hand it to the worker with ``worker.provide(KEY, value)``; tasks reach it with
``aqueue.current_job().resource(KEY)``. ``@app.on_worker_stop`` hooks tear it down.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from .exceptions import ResourceNotProvided, WorkerStartError

if TYPE_CHECKING:
    from ._worker import Worker

logger = logging.getLogger("aqueue.worker")

T = TypeVar("T")

WorkerHook: TypeAlias = Callable[["Worker"], Awaitable[None] | None]
"""A lifecycle hook: a function (``async def`` or plain ``def``) that takes the worker."""

H = TypeVar("H", bound=WorkerHook)


class ResourceKey(Generic[T]):
    """A typed name for a resource a worker provides to its tasks.

    ```python
    DB = aqueue.ResourceKey[asyncpg.Pool]("db")
    worker.provide(DB, pool)                  # in an @app.on_worker_start hook
    pool = aqueue.current_job().resource(DB)  # in a task: typed as asyncpg.Pool
    ```

    Keys compare by identity, not by name: two libraries that both call their key ``"db"``
    never see each other's resource. The name only appears in messages.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<ResourceKey {self.name!r}>"


def lookup(resources: Mapping[ResourceKey[Any], Any], key: ResourceKey[T], worker: str) -> T:
    """The resource under ``key``, or an error that says where to provide it."""
    try:
        value: T = resources[key]
    except KeyError:
        raise ResourceNotProvided(
            f"worker {worker} has no resource {key.name!r}: provide it in an "
            "@app.on_worker_start hook with worker.provide(KEY, value)"
        ) from None
    return value


class Lifecycle:
    """An app's start and stop hooks, in the order they were registered.

    They behave like an exit stack: starting runs the start hooks in order and arms each stop
    hook once every start hook registered before it has succeeded; stopping runs the armed
    stop hooks in reverse order. So a stop hook registered right after the start hook whose
    work it undoes runs exactly when that work was done, also when a later start hook fails.
    """

    def __init__(self) -> None:
        self._hooks: list[tuple[bool, WorkerHook]] = []  # (is a start hook, hook)

    def on_start(self, hook: H) -> H:
        self._hooks.append((True, _checked(hook)))
        return hook

    def on_stop(self, hook: H) -> H:
        self._hooks.append((False, _checked(hook)))
        return hook

    async def start(self, worker: Worker) -> list[WorkerHook]:
        """Run the start hooks; the stop hooks to run when the worker stops.

        Raises:
            WorkerStartError: A start hook raised; the stop hooks armed by then have run.
        """
        armed: list[WorkerHook] = []
        for is_start, hook in self._hooks:
            if not is_start:
                armed.append(hook)
                continue
            try:
                await _call(hook, worker)
            except BaseException as exc:
                # Also when the start is cancelled: what the earlier hooks set up is undone.
                await self.stop(worker, armed)
                if not isinstance(exc, Exception):
                    raise
                raise WorkerStartError(
                    f"on_worker_start hook {_name(hook)} failed: {type(exc).__name__}: {exc}. "
                    f"Worker {worker.name} did not start; fix what the hook sets up"
                ) from exc
        return armed

    async def stop(self, worker: Worker, armed: list[WorkerHook]) -> None:
        """Run ``armed`` stop hooks, last registered first; a failing one is logged."""
        for hook in reversed(armed):
            try:
                await _call(hook, worker)
            except Exception:
                # The jobs are done and their outcomes written: a failed teardown must not
                # keep the other hooks from releasing what they hold.
                logger.exception("on_worker_stop hook %s failed", _name(hook))


def _checked(hook: H) -> H:
    if not callable(hook):
        raise TypeError(f"a worker hook must be a function taking the worker, not {hook!r}")
    return hook


async def _call(hook: WorkerHook, worker: Worker) -> None:
    # Plain functions run on the loop, like the code around an embedded worker does; they
    # are meant to be quick (a hook that blocks for long should be async).
    result = hook(worker)
    if inspect.isawaitable(result):
        await result


def _name(hook: WorkerHook) -> str:
    return getattr(hook, "__qualname__", repr(hook))
