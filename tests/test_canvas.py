"""Workflows: signatures, chains, groups and chords, run by a real worker."""

from __future__ import annotations

import asyncio
import time

import pytest

import aqueue
from aqueue import Retry
from tests.internals import members


def tasks(app: aqueue.App) -> tuple[aqueue.Task[[int, int], int], aqueue.Task[[int], int]]:
    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    return add, double


async def test_a_signature_enqueues_like_the_task(app: aqueue.App) -> None:
    add, _ = tasks(app)
    async with aqueue.Worker(app):
        job = await add.s(2, 3).enqueue()
        assert await job.result(timeout=5) == 5


async def test_signature_options_apply_to_its_job(app: aqueue.App) -> None:
    add, _ = tasks(app)
    async with aqueue.Worker(app, queues=["other"]):
        job = await add.s(2, 3).options(queue="other").enqueue()
        assert job.queue == "other"
        assert await job.result(timeout=5) == 5


def test_arguments_that_bind_neither_way_are_refused(app: aqueue.App) -> None:
    add, _ = tasks(app)
    with pytest.raises(aqueue.InvalidArguments, match="add"):
        add.s(1, 2, 3)  # type: ignore[call-overload]  # wrong on purpose


def test_a_group_member_missing_its_first_argument_is_refused(app: aqueue.App) -> None:
    add, _ = tasks(app)
    with pytest.raises(aqueue.InvalidArguments, match="lacks its first argument"):
        aqueue.group([add.s(1, 2), add.s(3)])  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(aqueue.InvalidArguments, match="lacks its first argument"):
        aqueue.chord([add.s(3)], add.s(1))  # type: ignore[list-item]  # wrong on purpose


def test_a_task_where_a_signature_belongs_is_refused(app: aqueue.App) -> None:
    add, _ = tasks(app)
    with pytest.raises(aqueue.InvalidArguments, match="takes signatures"):
        aqueue.group([add])  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(aqueue.InvalidArguments, match="callback must be a signature"):
        aqueue.chord([add.s(1, 2)], add)  # type: ignore[arg-type]  # wrong on purpose


async def test_a_chain_passes_each_result_first_into_the_next_step(app: aqueue.App) -> None:
    add, double = tasks(app)

    @app.task
    async def label(value: int, *, prefix: str) -> str:
        return f"{prefix}{value}"

    async with aqueue.Worker(app):
        job = await (add.s(1, 2) | double.s() | add.s(10) | label.s(prefix="n=")).enqueue()
        assert await job.result(timeout=5) == "n=16"
        assert await job.status() is aqueue.JobStatus.SUCCEEDED
        assert (await job.info()).task == "aqueue.chain"


async def test_a_chain_job_lists_its_steps(app: aqueue.App) -> None:
    add, double = tasks(app)
    async with aqueue.Worker(app):
        job = await (add.s(1, 2) | double.s() | double.s()).enqueue()
        assert await job.result(timeout=5) == 12
        steps = await members(app, job.id)
    assert len(steps) == 3
    assert [await app.job(step).result(timeout=1) for step in steps] == [3, 6, 12]


async def test_a_failed_step_stops_the_chain_and_the_chain_names_it(app: aqueue.App) -> None:
    add, _ = tasks(app)
    ran: list[int] = []

    @app.task(name="explode")
    async def explode(value: int) -> int:
        raise ValueError(f"cannot take {value}")

    @app.task
    async def record(value: int) -> None:
        ran.append(value)

    async with aqueue.Worker(app):
        job = await (add.s(1, 2) | explode.s() | record.s()).enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
        last = app.job((await members(app, job.id))[-1])
        assert await last.status() is aqueue.JobStatus.FAILED
    assert failure.value.type == "builtins.ValueError"
    assert failure.value.message == (
        "step 2 of 3 (explode) failed with builtins.ValueError: cannot take 3"
    )
    assert "cannot take" in failure.value.traceback
    assert ran == []


async def test_a_group_gives_the_results_in_order(app: aqueue.App) -> None:
    @app.task
    async def slow_echo(value: int) -> int:
        await asyncio.sleep(0.05 * (5 - value))  # the first finish last
        return value

    async with aqueue.Worker(app):
        job = await aqueue.group([slow_echo.s(i) for i in range(5)]).enqueue()
        assert await job.result(timeout=5) == [0, 1, 2, 3, 4]
        assert (await job.info()).task == "aqueue.group"


async def test_a_failed_member_fails_the_group(app: aqueue.App) -> None:
    add, _ = tasks(app)

    @app.task(name="refuse")
    async def refuse(value: int) -> int:
        raise LookupError(f"no {value}")

    async with aqueue.Worker(app):
        job = await aqueue.group([add.s(1, 1), refuse.s(7)]).enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert failure.value.message == "member 2 of 2 (refuse) failed with builtins.LookupError: no 7"


async def test_with_return_exceptions_failures_take_their_place_in_the_list(
    app: aqueue.App,
) -> None:
    add, _ = tasks(app)

    @app.task(name="refuse")
    async def refuse(value: int) -> int:
        raise LookupError(f"no {value}")

    async with aqueue.Worker(app):
        job = await aqueue.group(
            [add.s(1, 1), refuse.s(7), add.s(2, 2)], return_exceptions=True
        ).enqueue()
        first, failed, last = await job.result(timeout=5)
    assert (first, last) == (2, 4)
    assert isinstance(failed, aqueue.TaskFailed)
    assert (failed.type, failed.message) == ("builtins.LookupError", "no 7")
    assert failed.job_id.startswith("default:")


@pytest.mark.one_loop  # round trips are the protocol's, not the loop's
async def test_a_group_of_ten_thousand_enqueues_in_few_round_trips(app: aqueue.App) -> None:
    @app.task
    async def echo(value: int) -> int:
        return value

    workflow = aqueue.group([echo.s(i) for i in range(10_000)])
    async with aqueue.Worker(app, concurrency=500):  # members end while the group is written
        started = time.perf_counter()
        job = await workflow.enqueue()
        enqueue_time = time.perf_counter() - started
        assert await job.result(timeout=30) == list(range(10_000))
    assert enqueue_time < 5  # a round trip each would take far longer on a busy machine


async def test_a_chord_callback_gets_the_header_results_and_runs_once(app: aqueue.App) -> None:
    add, _ = tasks(app)
    calls: list[list[int]] = []

    @app.task
    async def total(values: list[int], bonus: int = 0) -> int:
        calls.append(values)
        return sum(values) + bonus

    async with aqueue.Worker(app):
        job = await aqueue.chord([add.s(i, 1) for i in range(10)], total.s(bonus=100)).enqueue()
        assert await job.result(timeout=5) == 155
        assert (await job.info()).task == "aqueue.chord"
    assert calls == [list(range(1, 11))]


async def test_a_chord_waits_for_a_retried_header(app: aqueue.App) -> None:
    add, _ = tasks(app)
    attempts: list[int] = []
    calls: list[list[int]] = []

    @app.task(retries=2)
    async def flaky(value: int) -> int:
        attempts.append(value)
        if len(attempts) < 3:
            raise Retry(delay=0.05)
        return value

    @app.task
    async def total(values: list[int]) -> int:
        calls.append(values)
        return sum(values)

    async with aqueue.Worker(app):
        job = await aqueue.chord([add.s(1, 1), flaky.s(5)], total.s()).enqueue()
        assert await job.result(timeout=5) == 7
    assert len(attempts) == 3
    assert calls == [[2, 5]]


async def test_a_failed_header_fails_the_chord_and_the_callback_never_runs(
    app: aqueue.App,
) -> None:
    add, _ = tasks(app)
    calls: list[object] = []

    @app.task(name="refuse")
    async def refuse(value: int) -> int:
        raise LookupError(f"no {value}")

    @app.task
    async def total(values: list[int]) -> int:
        calls.append(values)
        return 0

    async with aqueue.Worker(app):
        job = await aqueue.chord([add.s(1, 1), refuse.s(3)], total.s()).enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert failure.value.message == "header 2 of 2 (refuse) failed with builtins.LookupError: no 3"
    assert calls == []


async def test_a_chord_can_pass_header_failures_to_the_callback(app: aqueue.App) -> None:
    add, _ = tasks(app)

    @app.task(name="refuse")
    async def refuse(value: int) -> int:
        raise LookupError(f"no {value}")

    @app.task
    async def describe(values: list[object]) -> list[object]:
        return values

    async with aqueue.Worker(app):
        job = await aqueue.chord(
            [add.s(1, 1), refuse.s(3)], describe.s(), return_exceptions=True
        ).enqueue()
        ok, failed = await job.result(timeout=5)
    assert ok == 2
    assert isinstance(failed, dict)
    assert failed["__aqueue_error__"]["type"] == "builtins.LookupError"
    assert failed["__aqueue_error__"]["message"] == "no 3"


async def test_a_group_of_chains_gives_each_chain_result(app: aqueue.App) -> None:
    add, double = tasks(app)
    async with aqueue.Worker(app):
        job = await aqueue.group([add.s(i, 0) | double.s() for i in range(3)]).enqueue()
        assert await job.result(timeout=5) == [0, 2, 4]


async def test_a_member_that_keeps_no_result_is_refused(app: aqueue.App) -> None:
    add, double = tasks(app)
    with pytest.raises(aqueue.ConfigurationError, match="result_ttl"):
        await (add.s(1, 2).options(result_ttl=0) | double.s()).enqueue()


async def test_a_lone_signature_may_keep_no_result(app: aqueue.App) -> None:
    add, _ = tasks(app)
    async with aqueue.Worker(app):
        job = await add.s(1, 2).options(result_ttl=0).enqueue()
        with pytest.raises(aqueue.JobNotFound, match="fire and forget"):
            await job.result()


async def test_a_failure_travels_down_a_long_chain(app: aqueue.App) -> None:
    _, double = tasks(app)

    @app.task(name="explode")
    async def explode() -> int:
        raise ValueError("at the start")

    chain = explode.s() | double.s()
    for _ in range(500):
        chain = chain | double.s()
    async with aqueue.Worker(app):
        job = await chain.enqueue()
        with pytest.raises(aqueue.TaskFailed, match=r"step 1 of 502 \(explode\) failed"):
            await job.result(timeout=10)
