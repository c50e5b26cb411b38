"""Workflows: signatures, chains, groups and chords.

A signature is a task with its arguments, not enqueued yet (``task.s(...)``). Signatures
compose: ``a.s(1) | b.s()`` is a chain (each result goes in first into the next step),
``group([...])`` runs signatures side by side and gives the list of their results, and
``chord([...], callback.s())`` hands that list to a callback. Each of them enqueues as one
job whose record (status, result, error) is an ordinary job record.

Every member is an ordinary job too; the later steps of a chain and a chord's callback wait
for the jobs they need and are enqueued, exactly once, when those end. The parent record
waits for its last member the same way. :mod:`aqueue._depend` explains why this is exactly
once and loses nothing across crashes, without polling, on Cluster too.

Typing: ``task.s(...)`` with every argument is a :class:`Signature` (enqueueable; arguments
checked as for ``enqueue``); without the first argument it is a :class:`Step` (only usable
where a result is passed in: after ``|`` or as a chord's callback). ``|`` carries the last
step's result type, so ``(a.s(1) | b.s()).enqueue()`` is a ``Job`` of ``b``'s result. Limit:
type checkers cannot see that a step accepts the previous result; that is checked when the
job runs (a mismatch fails the step, and with it the chain).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Self,
    TypeVar,
    Unpack,
    cast,
    overload,
)

from ._depend import ERROR_MARK, Plan, Waiting
from ._job import GROUP_TASK, Job, JobInfo
from ._message import Outgoing
from ._options import JobOptions
from ._redis._keys import new_job_id
from .exceptions import ConfigurationError, InvalidArguments, SerializationError, TaskFailed

if TYPE_CHECKING:
    from ._app import App
    from ._connections import Connections
    from ._task import Task
    from ._write import Writer

R = TypeVar("R")
R2 = TypeVar("R2")
T = TypeVar("T")


class Canvas(Generic[R]):
    """Anything that enqueues as one job: a :class:`Signature`, :class:`Chain`,
    :class:`Group` or :class:`Chord`."""

    __slots__ = ()

    @property
    def app(self) -> App:
        """The app the jobs are enqueued through."""
        raise NotImplementedError

    @property
    def _writer(self) -> Writer:
        """The write path of :attr:`app`."""
        raise NotImplementedError

    @property
    def queue(self) -> str:
        """The queue that holds this job's record."""
        raise NotImplementedError

    async def enqueue(self) -> Job[R]:
        """Enqueue it (every member of a workflow) in a few round trips, whatever its size.

        Raises:
            ConfigurationError: A member keeps no result (``result_ttl=0``), which the
                workflow needs.
            SerializationError, PayloadTooLarge, QueueFull, ConnectionFailed: As for
                :meth:`Task.enqueue`.
        """
        plan = Plan(self.app, self._writer)
        job_id = self._plan(plan)
        same = await plan.run()
        return self._handle(same.get(job_id, job_id))

    @overload
    def __or__(self, other: Step[R2]) -> Chain[R2]: ...
    @overload
    def __or__(self, other: Signature[R2]) -> Chain[R2]: ...
    def __or__(self, other: Any) -> Any:
        """Chain: ``other`` runs after this, with this one's result as its first argument."""
        if not isinstance(other, _Call):
            return NotImplemented
        return Chain(self, [other._as_step()])

    def _plan(self, plan: Plan) -> str:
        """Add what enqueueing writes to ``plan``; return the job id that stands for it."""
        raise NotImplementedError

    @property
    def _returns(self) -> Task[Any, Any] | None:
        """The task whose return annotation its result has (a group's has none)."""
        return None

    def _handle(self, job_id: str) -> Job[R]:
        returns = self._returns
        task = None if returns is None else returns.name
        return Job(self.app, self._writer.connections, job_id, task=task)

    def _from_wire(self, value: Any) -> Any:
        """``value``, this workflow's result as JSON, as the type its task's return
        annotation names (a group's: each member's)."""
        returns = self._returns
        conversion = None if returns is None else returns._config.types.result
        return value if conversion is None or value is None else conversion.from_wire(value)


class _Call:
    """A task with arguments (all of them, or all but the first)."""

    __slots__ = ("args", "kwargs", "task")

    def __init__(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.task = task
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"<{type(self).__name__} {self.task.name}({', '.join(shown)})>"

    def options(self, **changes: Unpack[JobOptions]) -> Self:
        """A copy with some options changed for its job (those of :meth:`Task.options`)."""
        return type(self)(self.task.options(**changes), self.args, self.kwargs)

    def _as_step(self) -> Step[Any]:
        """This call with a result put in front of its arguments (checked to bind)."""
        _bind(self.task, (_RESULT, *self.args), self.kwargs)
        return Step(self.task, self.args, self.kwargs)

    def _outgoing(self, *, first: int = 0) -> Outgoing:
        return self.task._writer.outgoing(self.task._config, self.args, self.kwargs, first=first)

    def _wait_for(self, plan: Plan, deps: list[str], *, as_list: bool, lenient: bool) -> str:
        """Register this call as a job that waits for ``deps`` and gets their results."""
        config = self.task._config
        if config.key or config.delay or config.at:
            raise ConfigurationError(
                f"{self.task.name} waits for a previous result (a chain's later step or a "
                "chord's callback), so it cannot have key, delay or at"
            )
        # Its arguments follow the previous result, which goes in first when it is known.
        outgoing = self._outgoing(first=1)
        return plan.wait(
            Waiting(
                outgoing.job_id,
                self.task.name,
                [*deps, *self.task._config.after],
                "job",
                outgoing.spec.result_ttl,
                outgoing.entry(),
                outgoing.spec.expires_ms,
                inject=len(deps),
                as_list=as_list,
                lenient=lenient,
            )
        )


class Signature(_Call, Canvas[R]):
    """A task with all its arguments: ``task.s(...)``. Enqueue it, or compose it."""

    __slots__ = ()

    @property
    def app(self) -> App:
        return self.task._app

    @property
    def _writer(self) -> Writer:
        return self.task._writer

    @property
    def queue(self) -> str:
        return self.task._config.queue

    def _plan(self, plan: Plan) -> str:
        outgoing = self._outgoing()
        if self.task._config.after:
            return plan.wait(waiting_job(outgoing, self.task._config.after))
        return plan.add(self.queue, outgoing, wait=self.task._config.wait)

    @property
    def _returns(self) -> Task[Any, Any] | None:
        return self.task

    def _handle(self, job_id: str) -> Job[R]:
        keeps = self.task._config.result_ttl > 0
        return Job(
            self.app, self._writer.connections, job_id, keeps_result=keeps, task=self.task.name
        )


class Step(_Call, Generic[R]):
    """A task with its arguments but the first, which a previous result fills in: the
    second and later steps of a chain (``a.s(1) | b.s()``), or a chord's callback."""

    __slots__ = ()


def signature(task: Task[Any, R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What ``task.s(*args, **kwargs)`` makes: a Signature when the arguments bind, else a
    Step when they bind with one more in front.

    Raises:
        InvalidArguments: They do not bind either way.
    """
    try:
        task._check_binds(args, kwargs)
    except TypeError:
        pass
    else:
        return Signature(task, args, kwargs)
    _bind(task, (_RESULT, *args), kwargs)
    return Step(task, args, kwargs)


def waiting_job(outgoing: Outgoing, after: Sequence[str]) -> Waiting:
    """A job that is enqueued as it is once every job in ``after`` succeeded."""
    return Waiting(
        outgoing.job_id,
        outgoing.spec.task,
        list(after),
        "job",
        outgoing.spec.result_ttl,
        outgoing.entry(),
        outgoing.spec.expires_ms,
    )


class Chain(Canvas[R]):
    """Steps run one after another, each result going in first into the next step.

    Its job's result is the last step's. A failure stops the chain: the chain's job fails
    with the failed step's error type and a message naming the step, e.g.
    ``step 2 of 3 (tasks.parse) failed with builtins.ValueError: ...``.
    """

    __slots__ = ("first", "steps")

    def __init__(self, first: Canvas[Any], steps: list[Step[Any]]) -> None:
        self.first = first
        self.steps = steps

    def __repr__(self) -> str:
        return " | ".join(repr(part) for part in (self.first, *self.steps))

    @property
    def app(self) -> App:
        return self.first.app

    @property
    def _writer(self) -> Writer:
        return self.first._writer

    @property
    def queue(self) -> str:
        return self.steps[-1].task._config.queue

    @property
    def _returns(self) -> Task[Any, Any] | None:
        return self.steps[-1].task

    @overload
    def __or__(self, other: Step[R2]) -> Chain[R2]: ...
    @overload
    def __or__(self, other: Signature[R2]) -> Chain[R2]: ...
    def __or__(self, other: Any) -> Any:
        if not isinstance(other, _Call):
            return NotImplemented
        return Chain(self.first, [*self.steps, other._as_step()])

    def _plan(self, plan: Plan) -> str:
        ids = [self.first._plan(plan)]
        for step in self.steps:
            ids.append(step._wait_for(plan, [ids[-1]], as_list=False, lenient=False))
        return plan.wait(_parent(self, "chain", [ids[-1]], ids))


class Group(Canvas[R]):
    """Signatures run side by side; the group's result is the list of theirs, in order.

    Made by :func:`group`.
    """

    __slots__ = ("members", "return_exceptions")

    def __init__(self, members: list[Canvas[Any]], return_exceptions: bool) -> None:
        if not members:
            raise ConfigurationError("a group needs at least one member")
        self.members = members
        self.return_exceptions = return_exceptions

    def __repr__(self) -> str:
        return f"<Group of {len(self.members)}>"

    @property
    def app(self) -> App:
        return self.members[0].app

    @property
    def _writer(self) -> Writer:
        return self.members[0]._writer

    @property
    def queue(self) -> str:
        return self.members[0].queue

    def _plan(self, plan: Plan) -> str:
        ids = [member._plan(plan) for member in self.members]
        return plan.wait(_parent(self, "group", ids, ids, lenient=self.return_exceptions))

    def _handle(self, job_id: str) -> Job[R]:
        return GroupJob(self.app, self._writer.connections, job_id, self)

    def _from_wire(self, value: Any) -> Any:
        if not isinstance(value, list) or len(value) != len(self.members):
            return value
        return [
            item if _failed(item) else member._from_wire(item)
            for member, item in zip(self.members, value, strict=True)
        ]


class Chord(Canvas[R]):
    """A group (the header) whose list of results goes in first into a callback.

    Made by :func:`chord`. Its job's result is the callback's.
    """

    __slots__ = ("callback", "header", "return_exceptions")

    def __init__(
        self, header: list[Canvas[Any]], callback: Step[R], return_exceptions: bool
    ) -> None:
        if not header:
            raise ConfigurationError("a chord needs at least one header signature")
        self.header = header
        self.callback = callback
        self.return_exceptions = return_exceptions

    def __repr__(self) -> str:
        return f"<Chord of {len(self.header)} then {self.callback!r}>"

    @property
    def app(self) -> App:
        return self.callback.task._app

    @property
    def _writer(self) -> Writer:
        return self.callback.task._writer

    @property
    def queue(self) -> str:
        return self.callback.task._config.queue

    @property
    def _returns(self) -> Task[Any, Any] | None:
        return self.callback.task

    def _plan(self, plan: Plan) -> str:
        ids = [member._plan(plan) for member in self.header]
        callback = self.callback._wait_for(plan, ids, as_list=True, lenient=self.return_exceptions)
        return plan.wait(_parent(self, "chord", [callback], [*ids, callback]))


@overload
def group(
    signatures: Iterable[Canvas[T]], *, return_exceptions: Literal[False] = False
) -> Group[list[T]]: ...
@overload
def group(
    signatures: Iterable[Canvas[T]], *, return_exceptions: Literal[True]
) -> Group[list[T | TaskFailed]]: ...
def group(signatures: Iterable[Canvas[Any]], *, return_exceptions: bool = False) -> Group[Any]:
    """Run ``signatures`` side by side; the group job's result is the list of their results.

    Args:
        signatures: Signatures, chains, groups or chords. Thousands enqueue in a few round
            trips (pipelined).
        return_exceptions: A failed member's place in the list holds a :class:`TaskFailed`
            (with the member's job id, error type, message and traceback) instead of
            failing the group. Without it the group fails as soon as a member fails.
    """
    return Group(_members(signatures, "a group"), return_exceptions)


def chord(
    header: Iterable[Canvas[Any]],
    callback: Step[R] | Signature[R],
    *,
    return_exceptions: bool = False,
) -> Chord[R]:
    """Run ``header`` side by side, then ``callback`` with the list of their results first.

    The callback is enqueued exactly once, when the last header job ends, even when header
    jobs are retried or redelivered after a worker crash.

    Args:
        header: Signatures, chains, groups or chords.
        callback: A signature without its first argument (``total.s()``).
        return_exceptions: A failed header job's place in the list holds a mapping
            ``{"__aqueue_error__": {"job", "task", "type", "message", ...}}`` and the
            callback runs anyway. Without it a failed header fails the chord (naming the
            header) and the callback never runs.
    """
    if not isinstance(callback, _Call):
        raise InvalidArguments(
            f"a chord's callback must be a signature without its first argument, such as "
            f"total.s(), not {callback!r}"
        )
    return Chord(_members(header, "a chord's header"), callback._as_step(), return_exceptions)


def _members(items: Iterable[object], what: str) -> list[Canvas[Any]]:
    """The members of a group or a chord's header, checked to be complete canvases."""
    members: list[Canvas[Any]] = []
    for member in items:
        if isinstance(member, Step):
            raise InvalidArguments(
                f"{what} member {member!r} lacks its first argument: give it all of them, as "
                "in task.s(x, y) (only a chain's later steps and a chord's callback take a "
                "previous result)"
            )
        if not isinstance(member, Canvas):
            raise InvalidArguments(
                f"{what} takes signatures (task.s(...)), chains, groups or chords, not {member!r}"
            )
        members.append(member)
    return members


class GroupJob(Job[R]):
    """A group's job. Its ``result()`` holds a :class:`TaskFailed` in place of each failed
    member (with ``return_exceptions=True``), as that of any handle on the group's id does
    (``app.job(group_id)``): the record says that the job is a group. Each member's result
    is converted into its task's return type, which only this handle knows (one from
    ``app.job(group_id)`` gives the members' JSON values)."""

    __slots__ = ("_group",)

    def __init__(self, app: App, connections: Connections, job_id: str, group: Group[Any]) -> None:
        # Named the group's task: its result has no return annotation of its own to look
        # up, so result() need not read the record's task name.
        super().__init__(app, connections, job_id, task=GROUP_TASK.decode())
        self._group = group

    async def result(self, timeout: float | timedelta | None = None) -> R:
        return cast(R, self._members_typed(await super().result(timeout)))

    async def info(self) -> JobInfo:
        info = await super().info()
        if info.result is None:
            return info
        return dataclasses.replace(info, result=self._members_typed(info.result))

    def _members_typed(self, value: Any) -> Any:
        try:
            return self._group._from_wire(value)
        except Exception as exc:
            raise SerializationError(
                f"a member's result of group job {self.id} does not convert into its task's "
                f"return annotation: {exc}. Was a task's return type changed since it ran?"
            ) from exc


def _failed(item: Any) -> bool:
    """Whether a group's list holds a failed member here (``return_exceptions=True``): a
    :class:`TaskFailed` once the handle made it one, else the mark the worker wrote."""
    return isinstance(item, TaskFailed) or (isinstance(item, dict) and ERROR_MARK in item)


def _parent(
    workflow: Canvas[Any], kind: str, deps: list[str], ids: list[str], *, lenient: bool = False
) -> Waiting:
    return Waiting(
        new_job_id(workflow.queue),
        f"aqueue.{kind}",
        deps,
        kind,
        workflow.app.result_ttl or 1,
        lenient=lenient,
        members=ids,
    )


_RESULT = object()
"""Stands for the result a step receives, when its arguments are checked."""


def _bind(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        task._check_binds(args, kwargs)
    except TypeError as exc:
        raise InvalidArguments(
            f"cannot make a signature of {task.name}{task._signature}: {exc} "
            "(in a chain or as a chord's callback, the previous result comes first)"
        ) from None
