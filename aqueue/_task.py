"""Tasks: functions registered on an app, enqueued with their arguments checked and typed."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, Unpack, overload

from ._canvas import Signature, Step, signature, waiting_job
from ._depend import Plan
from ._job import Job
from ._limits import RateLimit
from ._message import JobSpec, Outgoing
from ._options import JobOptions, checked
from ._redis._keys import DEFAULT_PRIORITY
from ._typed import UNTYPED, TaskTypes
from .backoff import Backoff, exponential
from .exceptions import ConfigurationError, InvalidArguments

if TYPE_CHECKING:
    from ._app import App
    from ._write import Writer

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


DEFAULT_BACKOFF = exponential()


@dataclasses.dataclass(frozen=True, slots=True)
class TaskConfig:
    """How a task runs; fixed at registration, overridable per job with ``options``.

    Holds every option of :class:`~aqueue._options.TaskOptions` and
    :class:`~aqueue._options.JobOptions` (as their checks make them), with its default."""

    name: str
    queue: str
    result_ttl: int
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: Backoff = DEFAULT_BACKOFF
    dead_letter_failures: bool = False
    delay: float = 0.0
    """Per-enqueue (set through ``options``): seconds before the job is due."""
    at: datetime | None = None
    """Per-enqueue (set through ``options``): when the job is due."""
    wait: bool = False
    """Per-enqueue (set through ``options``): wait for room in a full queue."""
    key: str | None = None
    """Per-enqueue (set through ``options``): at most one job with this key at a time."""
    key_ttl: int = 0
    """Per-enqueue (set through ``options``): seconds the key stays held after the end."""
    after: tuple[str, ...] = ()
    """Per-enqueue (set through ``options``): ids of jobs that must succeed first."""
    expires: float | datetime | None = None
    """Per-enqueue (set through ``options``): cancel the job if not started by then."""
    priority: int = DEFAULT_PRIORITY
    """0 (lowest) to 9 (highest): with a backlog, a worker runs higher levels first."""
    rate_limit: RateLimit | None = None
    """Most jobs of the task let through per second, minute or hour, by all workers."""
    max_concurrency: int | None = None
    """Most jobs of the task running at once, on all workers together."""
    types: TaskTypes = dataclasses.field(default=UNTYPED, repr=False, compare=False)
    """How its arguments and result convert to JSON and back, from its annotations."""
    spec: JobSpec = dataclasses.field(init=False, repr=False, compare=False)
    """What each job enqueued with this configuration carries, worked out once."""

    def __post_init__(self) -> None:
        expires = self.expires
        spec = JobSpec(
            self.name,
            self.result_ttl,
            self.timeout,
            delay_ms=int(self.delay * 1000),
            due_at_ms=0 if self.at is None else int(self.at.timestamp() * 1000),
            unique_key=self.key,
            key_ttl=self.key_ttl,
            expires_ms=int(expires * 1000) if isinstance(expires, float) else 0,
            expires_at_ms=int(expires.timestamp() * 1000) if isinstance(expires, datetime) else 0,
            priority=self.priority,
        )
        object.__setattr__(self, "spec", spec)  # frozen: set once, here


class Task(Generic[P, R]):
    """A function registered on an :class:`App`; enqueue it to run on a worker.

    Create tasks with the :meth:`App.task` decorator. Calling the task object runs the
    function directly, in the caller's process.
    """

    __slots__ = ("_app", "_arity", "_config", "_signature", "_writer", "fn", "is_async")

    def __init__(
        self, app: App, writer: Writer, fn: Callable[..., Any], config: TaskConfig
    ) -> None:
        self._app = app
        self._writer = writer
        self.fn = fn
        self._config = config
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        self._arity = _plain_arity(self._signature)

    @property
    def name(self) -> str:
        """The name the task is registered and enqueued under."""
        return self._config.name

    def __repr__(self) -> str:
        return f"<Task {self._config.name} queue={self._config.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function here and now (a coroutine for ``async def`` tasks)."""
        return self.fn(*args, **kwargs)

    def _check_binds(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError (as a call would) unless the arguments bind to the signature."""
        # On every enqueue and every run: a call with exactly as many positional arguments
        # as a plain signature has parameters always binds, without inspect's full check.
        if kwargs or len(args) != self._arity:
            self._signature.bind(*args, **kwargs)

    def options(self, **options: Unpack[JobOptions]) -> Task[P, R]:
        """A copy of this task with some options changed for the jobs it enqueues.

        Args:
            **options: Any of :class:`aqueue.JobOptions` (a delay, a uniqueness key, jobs to
                wait for, another queue...); None keeps the task's value.
        """
        changes = checked(options, JobOptions, "options()")
        if "delay" in changes and "at" in changes:
            raise ConfigurationError("give either delay or at, not both")
        # Each replaces the other when chained: options(delay=5).options(at=t) runs at t.
        if "delay" in changes:
            changes["at"] = None
        elif "at" in changes:
            changes["delay"] = 0.0
        changed = dataclasses.replace(self._config, **changes)
        copy: Task[P, R] = Task(self._app, self._writer, self.fn, changed)
        if "key_ttl" in changes and copy._config.key is None:
            raise ConfigurationError(
                "key_ttl keeps a uniqueness key after the job ended, but no key was given: "
                "pass options(key=..., key_ttl=...)"
            )
        if copy._config.after and (copy._config.key or copy._config.delay or copy._config.at):
            raise ConfigurationError(
                "a job with after= cannot also have key, delay or at: it is enqueued when "
                "its dependencies succeeded"
            )
        return copy

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job with these arguments, in one round trip.

        Raises:
            InvalidArguments: The arguments do not bind to the task's signature.
            SerializationError: An argument cannot be encoded.
            PayloadTooLarge: The encoded arguments exceed the app's ``max_payload_size``.
            QueueFull: The queue holds its ``max_queue_length`` (unless ``options(wait=True)``).
            ConnectionFailed: Redis could not be reached.
        """
        if self._config.after:
            [waiting] = await self._enqueue_after([self._prepare(args, kwargs)])
            return waiting
        [job] = await self._writer.write(
            self._config.queue, [self._prepare(args, kwargs)], wait=self._config.wait
        )
        return job

    async def enqueue_many(
        self, calls: Iterable[tuple[Any, ...] | Mapping[str, Any]]
    ) -> list[Job[R]]:
        """Enqueue one job per item in one pipelined round trip.

        Args:
            calls: Each item is a tuple of positional arguments or a mapping of keyword
                arguments. Every item is checked before anything is written.

        Raises:
            InvalidArguments: An item is neither, or its arguments do not bind.
        """
        batch = [self._prepare(*self._call_of(call)) for call in calls]
        if self._config.after:
            return await self._enqueue_after(batch)
        return await self._writer.write(self._config.queue, batch, wait=self._config.wait)

    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]: ...
    @overload
    def s(self: Task[Concatenate[Any, P2], R], *args: P2.args, **kwargs: P2.kwargs) -> Step[R]: ...
    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature: this task with these arguments, to enqueue later or compose into a
        chain (``a.s(1) | b.s()``), :func:`aqueue.group` or :func:`aqueue.chord`.

        With every argument it is a :class:`aqueue.Signature`; without the first one it is
        a :class:`aqueue.Step`, which a previous result completes (in a chain, or as a
        chord's callback).

        Raises:
            InvalidArguments: The arguments do not bind, even with one more in front.
        """
        return signature(self, args, kwargs)

    async def _enqueue_after(self, batch: list[Outgoing]) -> list[Job[R]]:
        plan = Plan(self._app, self._writer)
        for outgoing in batch:
            plan.wait(waiting_job(outgoing, self._config.after))
        await plan.run()
        keeps = self._config.result_ttl > 0
        return [
            Job(
                self._app,
                self._writer.connections,
                outgoing.job_id,
                keeps_result=keeps,
                task=self.name,
            )
            for outgoing in batch
        ]

    def _call_of(self, item: object) -> tuple[tuple[Any, ...], Mapping[str, Any]]:
        """The positional and keyword arguments of one ``enqueue_many`` item."""
        if type(item) is tuple:  # the usual case first: no ABC check per job
            return item, {}
        if isinstance(item, Mapping):
            return (), item
        if isinstance(item, list):
            return tuple(item), {}
        raise InvalidArguments(
            f"{self._config.name}.enqueue_many takes one tuple of positional arguments or one "
            f"mapping of keyword arguments per job, not {type(item).__name__} ({item!r:.60}); "
            "to enqueue signatures, enqueue each one or put them in aqueue.group([...])"
        )

    def _prepare(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Outgoing:
        try:
            self._check_binds(args, kwargs)
        except TypeError as exc:
            raise InvalidArguments(
                f"cannot enqueue {self._config.name}{self._signature}: {exc}"
            ) from None
        return self._writer.outgoing(self._config, args, kwargs)


def _plain_arity(signature: inspect.Signature) -> int:
    """How many parameters a signature has when each is a plain one without a default
    (so any call with that many positional arguments binds); -1 otherwise."""
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = signature.parameters.values()
    if all(p.kind in plain and p.default is inspect.Parameter.empty for p in params):
        return len(signature.parameters)
    return -1
