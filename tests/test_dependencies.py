"""Jobs that wait for other jobs: ``task.options(after=[...])``."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import aqueue
from aqueue.testing import RedisServer
from tests.internals import Connections, job_ended, worker_module


def gate_tasks(
    app: aqueue.App,
) -> tuple[asyncio.Event, aqueue.Task[[int], int], aqueue.Task[[str], str], list[str]]:
    """A task that waits for an event, and one that records that it ran."""
    gate = asyncio.Event()
    ran: list[str] = []

    @app.task(name="gated")
    async def gated(value: int) -> int:
        await gate.wait()
        return value

    @app.task(name="note")
    async def note(text: str) -> str:
        ran.append(text)
        return text

    return gate, gated, note, ran


async def test_a_job_runs_after_its_dependencies_succeeded(app: aqueue.App) -> None:
    gate, gated, note, ran = gate_tasks(app)
    async with aqueue.Worker(app):
        first = await gated.enqueue(1)
        second = await gated.enqueue(2)
        job = await note.options(after=[first, second]).enqueue("done")
        assert await job.status() is aqueue.JobStatus.SCHEDULED
        await asyncio.sleep(0.2)  # the dependencies are running: nothing may start it
        assert ran == []
        gate.set()
        assert await job.result(timeout=5) == "done"
    assert ran == ["done"]


async def test_a_job_whose_dependency_fails_fails_without_running(app: aqueue.App) -> None:
    _, _, note, ran = gate_tasks(app)

    @app.task(name="broken")
    async def broken() -> None:
        raise RuntimeError("disk full")

    async with aqueue.Worker(app):
        dependency = await broken.enqueue()
        job = await note.options(after=[dependency]).enqueue("never")
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert await job.status() is aqueue.JobStatus.FAILED
    assert failure.value.type == "aqueue.DependencyFailed"
    assert failure.value.message == (
        f"dependency failed: job {dependency.id} (broken) failed with builtins.RuntimeError: "
        "disk full"
    )
    assert ran == []


async def test_a_job_can_wait_for_a_job_still_queued(app: aqueue.App) -> None:
    _, _, note, ran = gate_tasks(app)
    dependency = await note.enqueue("first")
    job = await note.options(after=[dependency]).enqueue("second")
    assert await dependency.status() is aqueue.JobStatus.QUEUED
    async with aqueue.Worker(app):
        assert await job.result(timeout=5) == "second"
    assert ran == ["first", "second"]


async def test_a_dependency_that_already_succeeded_lets_the_job_run(app: aqueue.App) -> None:
    _, _, note, _ = gate_tasks(app)
    async with aqueue.Worker(app):
        dependency = await note.enqueue("first")
        await dependency.result(timeout=5)
        job = await note.options(after=[dependency]).enqueue("second")
        assert await job.result(timeout=5) == "second"


async def test_a_dependency_that_already_failed_fails_the_job_at_once(app: aqueue.App) -> None:
    _, _, note, ran = gate_tasks(app)

    @app.task(name="broken")
    async def broken() -> None:
        raise RuntimeError("disk full")

    async with aqueue.Worker(app):
        dependency = await broken.enqueue()
        with pytest.raises(aqueue.TaskFailed):
            await dependency.result(timeout=5)
        job = await note.options(after=[dependency.id]).enqueue("never")
        assert await job.status() is aqueue.JobStatus.FAILED
    assert ran == []


async def test_a_job_can_wait_for_a_workflow(app: aqueue.App) -> None:
    _, _, note, _ = gate_tasks(app)
    async with aqueue.Worker(app):
        workflow = await aqueue.group([note.s("a"), note.s("b")]).enqueue()
        job = await note.options(after=[workflow]).enqueue("after the group")
        assert await job.result(timeout=5) == "after the group"
        assert await workflow.result(timeout=1) == ["a", "b"]


async def test_a_job_waiting_for_an_unknown_id_fails(app: aqueue.App) -> None:
    _, _, note, _ = gate_tasks(app)
    job = await note.options(after=["default:doesnotexist"]).enqueue("never")
    with pytest.raises(aqueue.TaskFailed, match=r"dependency failed.*no record"):
        await job.result(timeout=5)


async def test_after_does_not_combine_with_a_uniqueness_key(app: aqueue.App) -> None:
    _, _, note, _ = gate_tasks(app)
    with pytest.raises(aqueue.ConfigurationError, match="after="):
        note.options(after=["default:abc"], key="k")


async def test_nothing_can_wait_for_a_job_that_keeps_no_result(app: aqueue.App) -> None:
    _, _, note, _ = gate_tasks(app)
    dependency = await note.options(result_ttl=0).enqueue("fire and forget")
    with pytest.raises(aqueue.ConfigurationError, match="keeps no result"):
        note.options(after=[dependency])


async def test_enqueue_many_jobs_after_one_dependency(app: aqueue.App) -> None:
    gate, gated, note, ran = gate_tasks(app)
    async with aqueue.Worker(app):
        dependency = await gated.enqueue(1)
        jobs = await note.options(after=[dependency]).enqueue_many([("x",), ("y",)])
        gate.set()
        assert [await job.result(timeout=5) for job in jobs] == ["x", "y"]
    assert sorted(ran) == ["x", "y"]


async def test_a_dependency_keeps_its_lease_while_its_waiting_jobs_are_told(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telling may outlast the lease (a 10,000-member group's release, a slow server): the
    entry is still this worker's until the ack, so no other worker claims and reruns it."""
    tells: list[str] = []

    async def slow_tell(app: aqueue.App, connections: Connections, job_id: str) -> None:
        tells.append(job_id)
        await asyncio.sleep(2.0)  # four leases
        await job_ended(app, connections, job_id)

    monkeypatch.setattr(worker_module, "job_ended", slow_tell)
    async with aqueue.App(server.url, namespace=namespace, lease=0.5) as app:
        gate, gated, note, _ = gate_tasks(app)
        async with aqueue.Worker(app, name="a") as first, aqueue.Worker(app, name="b") as second:
            dependency = await gated.enqueue(1)
            job = await note.options(after=[dependency]).enqueue("second")
            gate.set()
            assert await job.result(timeout=10) == "second"
    assert tells == [dependency.id]
    assert first.claimed == second.claimed == 0
    assert first.refused_acks == second.refused_acks == 0


async def test_telling_that_keeps_failing_lets_the_entry_go_and_the_redelivery_tells(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lasting Redis error on telling (only this worker's, the lease thread still renews)
    must not keep the entry renewed forever: after a lease it is let go and delivered again."""
    tells: list[float] = []

    async def failing_for_a_while(app: aqueue.App, connections: Connections, job_id: str) -> None:
        tells.append(time.monotonic())
        if tells[-1] - tells[0] < 1.5:
            raise RedisConnectionError("this worker's connections are refused")
        await job_ended(app, connections, job_id)

    monkeypatch.setattr(worker_module, "job_ended", failing_for_a_while)
    async with aqueue.App(server.url, namespace=namespace, lease=0.5) as app:
        gate, gated, note, _ = gate_tasks(app)
        async with aqueue.Worker(app) as worker:
            dependency = await gated.enqueue(1)
            job = await note.options(after=[dependency]).enqueue("second")
            gate.set()
            assert await job.result(timeout=10) == "second"
    assert worker.claimed >= 1  # let go after a lease of failures, then delivered again


async def test_a_dependency_whose_worker_failed_to_tell_is_told_on_redelivery(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome is written but the entry stays pending until the waiting jobs are told;
    the redelivery (skipped: the job ended) tells them."""
    tells: list[str] = []

    async def tell_once(app: aqueue.App, connections: Connections, job_id: str) -> None:
        tells.append(job_id)
        if len(tells) == 1:
            raise RuntimeError("the worker dies here")  # as if killed between outcome and ack
        await job_ended(app, connections, job_id)

    monkeypatch.setattr(worker_module, "job_ended", tell_once)
    async with aqueue.App(server.url, namespace=namespace, lease=1) as app:
        gate, gated, note, _ = gate_tasks(app)
        async with aqueue.Worker(app):
            # Gated: the dependency ends only after the dependent is registered, so the
            # worker (not the producer) is the one to tell it.
            dependency = await gated.enqueue(1)
            job = await note.options(after=[dependency]).enqueue("second")
            gate.set()
            assert await job.result(timeout=10) == "second"
        # Told again by the redelivery. (Whether the redelivery was skipped as ended or, after a
        # stall past the 1 s lease, ran the job again, is timing: at least once either way.)
        assert tells[:2] == [dependency.id, dependency.id]
