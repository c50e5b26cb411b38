"""The worker: ack late, concurrency, sync tasks, bad input, embedding and shutdown."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time

import anyio
import pytest
from redis.asyncio import Redis

import aqueue
from tests.helpers import Deployment, entries, eventually, has_status
from tests.internals import GROUP, MAX_SECONDS, Keys


async def test_an_entry_stays_pending_while_its_task_runs_and_is_gone_after(
    app: aqueue.App, redis: Redis
) -> None:
    release = asyncio.Event()

    @app.task
    async def held() -> str:
        await release.wait()
        return "done"

    stream = Keys(app.namespace, "default").stream
    async with aqueue.Worker(app):
        job = await held.enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        assert (await redis.xpending(stream, GROUP))["pending"] == 1
        assert await redis.xlen(stream) == 1
        release.set()
        assert await job.result(timeout=5) == "done"
    assert (await redis.xpending(stream, GROUP))["pending"] == 0
    assert await redis.xlen(stream) == 0


async def test_no_more_than_concurrency_jobs_run_at_once(app: aqueue.App) -> None:
    running = peak = 0

    @app.task
    async def busy() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    async with aqueue.Worker(app, concurrency=7):
        jobs = await busy.enqueue_many([() for _ in range(60)])
        await asyncio.gather(*(job.result(timeout=10) for job in jobs))
    assert peak == 7


async def test_io_bound_jobs_run_concurrently(app: aqueue.App) -> None:
    @app.task
    async def wait() -> None:
        await asyncio.sleep(0.2)

    async with aqueue.Worker(app, concurrency=100):
        started = time.perf_counter()
        jobs = await wait.enqueue_many([() for _ in range(100)])
        await asyncio.gather(*(job.result(timeout=10) for job in jobs))
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # serially it would take 20 s


async def test_a_sync_task_runs_in_a_thread_and_the_loop_keeps_going(app: aqueue.App) -> None:
    loop_thread = threading.get_ident()

    @app.task
    def blocking() -> bool:
        time.sleep(0.3)
        return threading.get_ident() != loop_thread

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with aqueue.Worker(app):
        ticker = asyncio.create_task(tick())
        job = await blocking.enqueue()
        assert await job.result(timeout=5) is True
        ticker.cancel()
    assert ticks > 10


async def test_current_job_describes_the_running_job(app: aqueue.App) -> None:
    @app.task(queue="ctx")
    async def whoami() -> list[object]:
        ctx = aqueue.current_job()
        return [ctx.id, ctx.queue, ctx.attempt, ctx.task, ctx.enqueued_at.year]

    async with aqueue.Worker(app, queues=["ctx"]):
        job = await whoami.enqueue()
        ident, queue, attempt, task, year = await job.result(timeout=5)
    assert (ident, queue, attempt, task) == (job.id, "ctx", 1, whoami.name)
    assert isinstance(year, int)
    assert year >= 2025


def test_current_job_outside_a_task_says_so() -> None:
    with pytest.raises(aqueue.NotInJob, match="only available inside a task"):
        aqueue.current_job()


async def test_one_worker_serves_several_queues(app: aqueue.App) -> None:
    @app.task(queue="a")
    async def in_a() -> str:
        return "a"

    @app.task(queue="b")
    async def in_b() -> str:
        return "b"

    async with aqueue.Worker(app, queues=["a", "b"]):
        assert [await (await t.enqueue()).result(timeout=5) for t in (in_a, in_b)] == ["a", "b"]


async def test_an_unknown_task_is_dead_lettered_and_the_worker_goes_on(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def known() -> str:
        return "ok"

    async with aqueue.Worker(app):
        ghost = await app.enqueue("nobody.knows")
        with pytest.raises(aqueue.TaskFailed, match=r"no task named 'nobody\.knows'"):
            await ghost.result(timeout=5)
        assert await (await known.enqueue()).result(timeout=5) == "ok"
    [(_, dead)] = await entries(redis, Keys(app.namespace, "default").dead)
    assert dead[b"reason"].startswith(b"no task named 'nobody.knows'")
    assert dead[b"j"] == ghost.id.encode()
    assert dead[b"t"] == b"nobody.knows"


async def test_arguments_that_do_not_bind_on_the_worker_are_dead_lettered(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="math.add")
    async def add(x: int, y: int) -> int:
        return x + y

    producer = aqueue.App(app.url, namespace=app.namespace)  # knows no tasks
    async with producer, aqueue.Worker(app):
        job = await producer.enqueue("math.add", 1, 2, 3)
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert failure.value.type == "aqueue.InvalidArguments"
    [(_, dead)] = await entries(redis, Keys(app.namespace, "default").dead)
    assert dead[b"reason"].startswith(b"arguments do not bind")


async def test_garbage_in_the_stream_is_dead_lettered_and_the_queue_flows(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def known() -> str:
        return "ok"

    keys = Keys(app.namespace, "default")
    await redis.xadd(keys.stream, {b"junk": b"\xff\x00"})
    await redis.xadd(keys.stream, {b"j": b"default:x", b"t": known.name.encode(), b"p": b"{{"})
    async with aqueue.Worker(app):
        assert await (await known.enqueue()).result(timeout=5) == "ok"
        await eventually(lambda: _length_is(redis, keys.dead, 2))
    reasons = [fields[b"reason"] for _, fields in await entries(redis, keys.dead)]
    assert reasons[0] == b"entry lacks a job id, task or payload"
    assert reasons[1].startswith(b"cannot decode payload")
    assert await redis.xlen(keys.stream) == 0


async def test_an_entry_asking_to_keep_its_result_beyond_any_ttl_keeps_it_a_century(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="hand.made")
    async def hand_made() -> str:
        return "ok"

    keys = Keys(app.namespace, "default")
    job_id = "default:" + "a" * 32
    # Written by another program: a result ttl out of EXPIRE's range.
    fields = {b"j": job_id, b"t": b"hand.made", b"p": b"[[],{}]", b"r": b"99999999999999999"}
    await redis.xadd(keys.stream, fields)  # type: ignore[arg-type]
    async with aqueue.Worker(app):
        # The worker makes the record when it starts the job (nobody enqueued it).
        await eventually(lambda: has_status(app.job(job_id), aqueue.JobStatus.SUCCEEDED))
    assert await app.job(job_id).result(timeout=0) == "ok"
    assert 0 < await redis.ttl(keys.job(job_id)) <= MAX_SECONDS
    assert await redis.xlen(keys.stream) == 0


async def _await_a_cancelled_future() -> None:
    # What a library does when it closes under a caller: the future it awaited is cancelled.
    future = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


async def test_a_task_calling_sys_exit_fails_and_the_worker_goes_on(app: aqueue.App) -> None:
    @app.task
    async def exits() -> None:
        sys.exit(3)

    @app.task
    def exits_in_a_thread() -> None:
        sys.exit(4)

    @app.task
    async def after() -> str:
        return "next"

    async with aqueue.Worker(app):
        for task, code in ((exits, 3), (exits_in_a_thread, 4)):
            job = await task.enqueue()
            with pytest.raises(aqueue.TaskFailed, match=f"raised SystemExit itself .*{code}"):
                await job.result(timeout=5)
        assert await (await after.enqueue()).result(timeout=5) == "next"


@pytest.mark.parametrize("result_ttl", [3600, 0])
async def test_a_cancelled_error_raised_by_the_task_itself_fails_it_once(
    app: aqueue.App, redis: Redis, result_ttl: int
) -> None:
    runs = 0

    @app.task(result_ttl=result_ttl)
    async def calls_a_library() -> None:
        nonlocal runs
        runs += 1
        await _await_a_cancelled_future()

    @app.task
    async def after() -> str:
        return "next"

    async with aqueue.Worker(app, concurrency=1):
        job = await calls_a_library.enqueue()
        if result_ttl:
            with pytest.raises(aqueue.TaskFailed, match="raised CancelledError itself"):
                await job.result(timeout=5)
        # One job at a time: once the next job ran, the first is done with for good.
        assert await (await after.enqueue()).result(timeout=5) == "next"
        await asyncio.sleep(0.2)  # time a wrongly handed-back job would run again in
    assert runs == 1
    assert await redis.xlen(Keys(app.namespace, "default").stream) == 0


async def test_a_fire_and_forget_job_runs_and_leaves_nothing_behind(
    app: aqueue.App, redis: Redis
) -> None:
    done = asyncio.Event()

    @app.task(result_ttl=0)
    async def notify() -> None:
        done.set()

    async with aqueue.Worker(app):
        await notify.enqueue()
        await asyncio.wait_for(done.wait(), 5)
        await eventually(lambda: _length_is(redis, Keys(app.namespace, "default").stream, 0))
    assert [key async for key in redis.scan_iter(match=f"{app.namespace}:*:job:*")] == []


async def test_leaving_the_block_lets_running_jobs_finish(app: aqueue.App) -> None:
    started = asyncio.Event()

    @app.task
    async def slow() -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    async with aqueue.Worker(app, grace_period=5):
        job = await slow.enqueue()
        await asyncio.wait_for(started.wait(), 5)
    assert await job.status() is aqueue.JobStatus.SUCCEEDED
    assert await job.result(timeout=1) == "finished"


async def test_a_job_still_running_after_the_grace_period_is_handed_back(
    app: aqueue.App, redis: Redis
) -> None:
    started = asyncio.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    keys = Keys(app.namespace, "default")
    async with aqueue.Worker(app, grace_period=0.1):
        job = await endless.enqueue()
        await asyncio.wait_for(started.wait(), 5)
    assert await job.status() is aqueue.JobStatus.QUEUED
    assert await redis.xlen(keys.stream) == 1
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_stopping_twice_cancels_running_jobs_at_once(app: aqueue.App) -> None:
    started = asyncio.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    worker = aqueue.Worker(app, grace_period=60)
    serving = asyncio.create_task(worker.run(handle_signals=False))
    job = await endless.enqueue()
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    worker.stop()
    await asyncio.wait_for(serving, 5)
    assert await job.status() is aqueue.JobStatus.QUEUED


def _endless(app: aqueue.App) -> tuple[aqueue.Task[[], None], asyncio.Event, list[str]]:
    """A task that runs until it is cancelled; the event is set once it started, and the list
    says "cancelled" once it was."""
    started = asyncio.Event()
    ended: list[str] = []

    @app.task
    async def endless() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    return endless, started, ended


async def test_cancelling_run_cancels_the_running_jobs_before_it_returns(
    app: aqueue.App,
) -> None:
    endless, started, ended = _endless(app)

    serving = asyncio.create_task(aqueue.Worker(app, grace_period=60).run(handle_signals=False))
    await endless.enqueue()
    await asyncio.wait_for(started.wait(), 5)
    serving.cancel()
    await asyncio.wait([serving], timeout=5)
    assert serving.cancelled()  # the cancellation reaches the caller, once the worker stopped
    assert ended == ["cancelled"]


async def test_run_cancelled_by_an_anyio_scope_still_cancels_the_running_jobs(
    app: aqueue.App,
) -> None:
    """An anyio scope (a Starlette lifespan's) cancels again at every turn of the loop until
    run() returns: the stop goes on to the end all the same."""
    endless, started, ended = _endless(app)

    await endless.enqueue()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(aqueue.Worker(app).run, handle_signals=False))
            await started.wait()
            group.cancel_scope.cancel()
    assert ended == ["cancelled"]


async def test_leaving_the_block_in_a_cancelled_anyio_scope_cancels_the_running_jobs(
    app: aqueue.App,
) -> None:
    """The scope cancels the graceful stop again and again: the worker stops at once."""
    endless, started, ended = _endless(app)

    await endless.enqueue()
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        async with aqueue.Worker(app, grace_period=60):
            await started.wait()
            scope.cancel()
            await asyncio.sleep(60)
    assert ended == ["cancelled"]


async def test_a_job_running_when_run_is_cancelled_runs_again_on_the_next_worker(
    server: Deployment, namespace: str
) -> None:
    """Handed back at once, not left pending until its lease lapses."""
    runs = 0

    async with aqueue.App(server.url, namespace=namespace, lease=60) as app:

        @app.task
        async def slow_at_first() -> int:
            nonlocal runs
            runs += 1
            if runs == 1:
                await asyncio.sleep(60)
            return runs

        serving = asyncio.create_task(aqueue.Worker(app).run(handle_signals=False))
        job = await slow_at_first.enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        async with aqueue.Worker(app):
            assert await job.result(timeout=5) == 2


async def test_a_handed_back_job_is_finished_by_the_next_worker(app: aqueue.App) -> None:
    runs = 0

    @app.task
    async def sometimes_slow() -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            await asyncio.sleep(60)
        return runs

    started = asyncio.Event()
    async with aqueue.Worker(app, grace_period=0):
        job = await sometimes_slow.enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        started.set()
    async with aqueue.Worker(app):
        assert await job.result(timeout=5) == 2
    assert (await job.info()).attempts == 2


async def test_the_worker_is_counted_in_stats_while_it_runs(app: aqueue.App) -> None:
    queue = app.queue()
    async with aqueue.Worker(app):
        await eventually(lambda: _workers_are(queue, 1))
    assert (await queue.stats()).workers == 0


async def test_a_worker_is_counted_only_in_the_stats_of_the_queues_it_serves(
    app: aqueue.App,
) -> None:
    async with aqueue.Worker(app, queues=["a", "b"]):
        await eventually(lambda: _workers_are(app.queue("a"), 1))
        assert (await app.queue("b").stats()).workers == 1
        assert (await app.queue("c").stats()).workers == 0


async def test_stats_count_queued_running_and_dead_jobs(app: aqueue.App) -> None:
    release = asyncio.Event()

    @app.task
    async def held() -> None:
        await release.wait()

    await app.enqueue("nobody.knows")
    async with aqueue.Worker(app, concurrency=2):
        await held.enqueue_many([(), (), (), ()])
        await eventually(lambda: _stats_are(app.queue(), queued=2, running=2, dead=1))
        release.set()


async def test_a_worker_against_an_unreachable_server_fails_clearly() -> None:
    app = aqueue.App("redis://127.0.0.1:1/0")
    with pytest.raises(aqueue.ConnectionFailed, match="cannot reach Redis"):
        async with app, aqueue.Worker(app):
            pass


async def _length_is(redis: Redis, stream: bytes, length: int) -> bool:
    return int(await redis.xlen(stream)) == length


async def _workers_are(queue: aqueue.Queue, count: int) -> bool:
    return (await queue.stats()).workers == count


async def _stats_are(queue: aqueue.Queue, *, queued: int, running: int, dead: int) -> bool:
    stats = await queue.stats()
    return (stats.queued, stats.running, stats.dead) == (queued, running, dead)


async def test_waiting_for_a_free_thread_does_not_count_against_the_timeout(
    app: aqueue.App,
) -> None:
    @app.task(timeout=0.5)
    def steady() -> str:
        time.sleep(0.3)
        return "done"

    async with aqueue.Worker(app, threads=1):
        jobs = await steady.enqueue_many([(), ()])  # the second waits 0.3 s for the thread
        assert [await job.result(timeout=5) for job in jobs] == ["done", "done"]


async def test_sync_tasks_past_their_timeout_never_exceed_the_thread_limit(
    app: aqueue.App,
) -> None:
    lock = threading.Lock()
    running = peak = 0

    @app.task(timeout=0.05)
    def overrun() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)
        with lock:
            running -= 1

    async with aqueue.Worker(app, threads=2):
        jobs = await overrun.enqueue_many([() for _ in range(6)])
        for job in jobs:
            with pytest.raises(aqueue.TaskTimeout):
                await job.result(timeout=10)
    assert peak == 2


async def test_a_misspelt_task_names_the_registered_task_it_likely_meant(app: aqueue.App) -> None:
    @app.task(name="emails.send")
    async def send(to: str) -> None: ...

    async with aqueue.Worker(app):
        job = await app.enqueue("emails.sned", "a@b.c")
        with pytest.raises(aqueue.TaskFailed, match=r"did you mean 'emails\.send'\?"):
            await job.result(timeout=5)


async def test_a_task_enqueued_from_a_script_run_as_main_says_how_to_name_it(
    app: aqueue.App,
) -> None:
    @app.task(name="script.hello")
    async def hello() -> None: ...

    async with aqueue.Worker(app):
        job = await app.enqueue("__main__.hello")
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    assert "did you mean 'script.hello'?" in failure.value.message
    assert "@app.task(name=...)" in failure.value.message
