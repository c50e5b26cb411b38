"""Middleware around enqueueing and running jobs, and the signals of each run's outcome."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

import aqueue
from tests.helpers import entries, eventually
from tests.internals import Keys

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")


class Tenancy(aqueue.Middleware):
    """Carries the producer's tenant to the worker, where tasks read it from the contextvar."""

    def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
        job.metadata["tenant"] = tenant.get()

    async def around_run(self, job: aqueue.JobContext, call_next: aqueue.CallNext) -> Any:
        token = tenant.set(job.metadata["tenant"])
        try:
            return await call_next()
        finally:
            tenant.reset(token)


class Recorder(aqueue.Middleware):
    """Every signal it receives, as (signal, job id, attempt, detail)."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str, int, object]] = []

    async def on_started(self, job: aqueue.JobContext) -> None:
        self.signals.append(("started", job.id, job.attempt, None))

    async def on_succeeded(self, job: aqueue.JobContext, result: Any) -> None:
        self.signals.append(("succeeded", job.id, job.attempt, result))

    async def on_failed(self, job: aqueue.JobContext, error: Exception) -> None:
        self.signals.append(("failed", job.id, job.attempt, repr(error)))

    async def on_retried(self, job: aqueue.JobContext, error: Exception, delay: float) -> None:
        self.signals.append(("retried", job.id, job.attempt, (repr(error), delay)))


async def test_metadata_set_on_enqueue_is_read_by_the_middleware_around_the_run(
    app: aqueue.App,
) -> None:
    app.add_middleware(Tenancy())

    @app.task
    async def whose() -> list[object]:
        return [tenant.get(), dict(aqueue.current_job().metadata)]

    token = tenant.set("acme")
    job = await whose.enqueue()
    tenant.reset(token)
    async with aqueue.Worker(app):
        assert await job.result(timeout=5) == ["acme", {"tenant": "acme"}]


async def test_metadata_travels_in_the_stream_entry_and_only_when_set(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def noop() -> None: ...

    @app.task(timeout=9)
    async def limited() -> None: ...

    stream = Keys(app.namespace, "default").stream
    await noop.enqueue()
    [(_, plain)] = await entries(redis, stream)
    assert b"o" not in plain  # no middleware: the entry is what it always was

    class Tracing(aqueue.Middleware):
        def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
            job.metadata["trace"] = f"trace-of-{job.task.rsplit('.', 1)[-1]}"

    app.add_middleware(Tracing())
    await limited.enqueue()
    [_, (_, traced)] = await entries(redis, stream)
    assert orjson.loads(traced[b"o"]) == {"timeout": 9, "meta": {"trace": "trace-of-limited"}}


async def test_metadata_is_still_there_when_the_job_is_retried(app: aqueue.App) -> None:
    app.add_middleware(Tenancy())

    @app.task(retries=2, backoff=aqueue.backoff.fixed(0))
    async def flaky() -> list[object]:
        job = aqueue.current_job()
        if job.attempt < 3:
            raise ConnectionError("partner down")
        return [job.attempt, tenant.get()]

    token = tenant.set("acme")
    job = await flaky.enqueue()
    tenant.reset(token)
    async with aqueue.Worker(app):
        assert await job.result(timeout=10) == [3, "acme"]


async def test_enqueue_middleware_sees_the_call_and_its_options(app: aqueue.App) -> None:
    seen: list[aqueue.OutgoingJob] = []

    class Spy(aqueue.Middleware):
        def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
            seen.append(job)

    app.add_middleware(Spy())

    @app.task(queue="mail", timeout=5)
    async def send(to: str, *, subject: str = "") -> None: ...

    job = await send.options(delay=30, key="welcome-ann").enqueue("ann", subject="hi")
    [outgoing] = seen
    assert (outgoing.id, outgoing.task, outgoing.queue) == (job.id, send.name, "mail")
    assert (outgoing.args, dict(outgoing.kwargs)) == (("ann",), {"subject": "hi"})
    options = outgoing.options
    assert (options["delay"], options["key"], options["timeout"]) == (30, "welcome-ann", 5)
    assert options["at"] is None
    assert options["result_ttl"] == app.result_ttl


async def test_enqueue_middleware_sees_every_job_option(app: aqueue.App) -> None:
    seen: list[aqueue.OutgoingJob] = []

    class Spy(aqueue.Middleware):
        def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
            seen.append(job)

    app.add_middleware(Spy())

    @app.task
    async def send() -> None: ...

    await send.options(priority=7, wait=True).enqueue()
    [outgoing] = seen
    assert set(outgoing.options) == aqueue.JobOptions.__optional_keys__
    assert (outgoing.options["priority"], outgoing.options["wait"]) == (7, True)


async def test_enqueue_middleware_that_raises_refuses_the_whole_call(app: aqueue.App) -> None:
    class Quota(aqueue.Middleware):
        def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
            if job.args[0] > 2:
                raise PermissionError(f"tenant over quota at {job.args[0]}")

    app.add_middleware(Quota())

    @app.task
    async def work(n: int) -> None: ...

    with pytest.raises(PermissionError, match="over quota at 3"):
        await work.enqueue(3)
    with pytest.raises(PermissionError, match="over quota at 3"):
        await work.enqueue_many([(1,), (2,), (3,)])
    assert (await app.queue().stats()).queued == 0  # nothing of the batch was written
    await work.enqueue(1)
    assert (await app.queue().stats()).queued == 1


async def test_metadata_that_is_not_strings_is_refused_at_enqueue(app: aqueue.App) -> None:
    class Sloppy(aqueue.Middleware):
        def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
            job.metadata["user"] = 42  # type: ignore[assignment]

    app.add_middleware(Sloppy())

    @app.task
    async def work() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="strings to strings"):
        await work.enqueue()


async def test_signals_report_started_retried_failed_and_succeeded_with_the_job(
    app: aqueue.App,
) -> None:
    recorder = Recorder()
    app.add_middleware(recorder)

    @app.task(retries=1, backoff=aqueue.backoff.fixed(0))
    async def doomed() -> None:
        raise ValueError(f"attempt {aqueue.current_job().attempt}")

    @app.task
    def double(x: int) -> int:
        return 2 * x

    async with aqueue.Worker(app):
        failed = await doomed.enqueue()
        with pytest.raises(aqueue.TaskFailed):
            await failed.result(timeout=10)
        succeeded = await double.enqueue(21)
        assert await succeeded.result(timeout=5) == 42
    assert recorder.signals == [
        ("started", failed.id, 1, None),
        ("retried", failed.id, 1, ("ValueError('attempt 1')", 0.0)),
        ("started", failed.id, 2, None),
        ("failed", failed.id, 2, "ValueError('attempt 2')"),
        ("started", succeeded.id, 1, None),
        ("succeeded", succeeded.id, 1, 42),
    ]


async def test_a_timed_out_run_is_signalled_as_failed_with_task_timeout(
    app: aqueue.App,
) -> None:
    recorder = Recorder()
    app.add_middleware(recorder)

    @app.task(timeout=0.05)
    async def stuck() -> None:
        await asyncio.sleep(10)

    async with aqueue.Worker(app):
        job = await stuck.enqueue()
        with pytest.raises(aqueue.TaskTimeout):
            await job.result(timeout=5)
    [_, (signal, job_id, _, error)] = recorder.signals
    assert (signal, job_id) == ("failed", job.id)
    assert str(error).startswith("TaskTimeout(")


async def test_a_raising_signal_handler_is_logged_and_the_job_keeps_its_outcome(
    app: aqueue.App, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(aqueue.Middleware):
        async def on_started(self, job: aqueue.JobContext) -> None:
            raise RuntimeError("metrics backend down")

        async def on_succeeded(self, job: aqueue.JobContext, result: Any) -> None:
            raise RuntimeError("metrics backend still down")

    recorder = Recorder()
    app.add_middleware(Broken())
    app.add_middleware(recorder)  # later handlers are still notified

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with caplog.at_level(logging.ERROR, logger="aqueue.middleware"):
        async with aqueue.Worker(app):
            job = await add.enqueue(2, 3)
            assert await job.result(timeout=5) == 5
            assert await (await add.enqueue(1, 1)).result(timeout=5) == 2  # worker goes on
    assert [signal for signal, *_ in recorder.signals] == ["started", "succeeded"] * 2
    assert f"Broken.on_started failed for job {job.id}" in caplog.text
    assert "metrics backend still down" in caplog.text


async def test_a_raising_around_run_fails_the_job_with_its_error_and_signals_it(
    app: aqueue.App,
) -> None:
    class Guard(aqueue.Middleware):
        async def around_run(self, job: aqueue.JobContext, call_next: aqueue.CallNext) -> Any:
            if "tenant" not in job.metadata:
                raise PermissionError("job carries no tenant")
            return await call_next()

    ran: list[int] = []
    recorder = Recorder()
    app.add_middleware(recorder)
    app.add_middleware(Guard())

    @app.task
    async def work(n: int) -> None:
        ran.append(n)

    async with aqueue.Worker(app):
        job = await work.enqueue(1)
        with pytest.raises(aqueue.TaskFailed, match="job carries no tenant") as failure:
            await job.result(timeout=5)
    assert failure.value.type == "builtins.PermissionError"
    assert ran == []
    assert recorder.signals[-1] == ("failed", job.id, 1, "PermissionError('job carries no tenant')")


async def test_middleware_wrap_the_run_in_the_order_they_were_added(app: aqueue.App) -> None:
    calls: list[str] = []

    class Layer(aqueue.Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        async def around_run(self, job: aqueue.JobContext, call_next: aqueue.CallNext) -> Any:
            calls.append(f"{self.name} in")
            result = await call_next()
            calls.append(f"{self.name} out")
            return f"{self.name}({result})"

    app.add_middleware(Layer("outer"))
    app.add_middleware(Layer("inner"))

    @app.task
    async def value() -> str:
        calls.append("task")
        return "v"

    async with aqueue.Worker(app):
        assert await (await value.enqueue()).result(timeout=5) == "outer(inner(v))"
    assert calls == ["outer in", "inner in", "task", "inner out", "outer out"]


def test_only_middleware_instances_can_be_added(app: aqueue.App) -> None:
    with pytest.raises(aqueue.ConfigurationError, match=r"aqueue\.Middleware subclass"):
        app.add_middleware(Recorder)  # type: ignore[arg-type]


async def test_a_periodic_tick_refused_by_enqueue_middleware_is_logged_and_the_worker_goes_on(
    app: aqueue.App, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    class NeedsTenant(Tenancy):
        def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
            if job.task == "hourly":
                raise LookupError("no tenant outside a request")
            super().on_enqueue(job)

    app.add_middleware(NeedsTenant())

    @app.periodic(every=3600, misfire="run_once", name="hourly")
    async def hourly() -> None: ...

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    # A missed tick: the worker fires it as it starts, and the middleware refuses it.
    two_hours_ago = (time.time() // 3600 - 2) * 3600
    await redis.set(f"{app.namespace}:cron:hourly:last", repr(two_hours_ago))
    token = tenant.set("acme")
    with caplog.at_level(logging.ERROR, logger="aqueue"):
        async with aqueue.Worker(app):
            assert await (await add.enqueue(2, 3)).result(timeout=5) == 5
            await eventually(lambda: _logged(caplog, "cannot fire hourly"))
    tenant.reset(token)
    assert "no tenant outside a request" in caplog.text


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text
