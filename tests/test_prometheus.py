"""Prometheus metrics: counted by middleware, scraped over HTTP from real workers."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import aqueue
from aqueue.contrib.prometheus import Metrics, serve_children, serve_metrics
from aqueue.testing import RedisServer
from aqueue.testing import _free_port as free_port
from tests.helpers import eventually
from tests.test_cli import ROOT, cli_env

ADD = "tests.cli_app.add"
NAP = "tests.cli_app.nap"


async def scrape(port: int) -> list[Sample]:
    """Every sample of one real scrape of ``/metrics``."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    families = text_string_to_metric_families(response.text)
    return [sample for family in families for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    return found[0] if found else None


@pytest.fixture
def worker_port(
    server: RedisServer, namespace: str, request: pytest.FixtureRequest
) -> Iterator[int]:
    """An ``aqueue worker --metrics-port`` command of the CLI's app (one process, or as many
    as a test's indirect parameter says, under a supervisor that serves their sums); its
    metrics port."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aqueue",
            "worker",
            "tests.cli_app:app",
            "--metrics-port",
            f"{port}",
            "-p",
            f"{getattr(request, 'param', 1)}",
        ],
        env=cli_env(server, namespace),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
async def producer(server: RedisServer, namespace: str) -> aqueue.App:
    """A producer for the CLI's app: it enqueues by name."""
    return aqueue.App(server.url, namespace=namespace)


async def _answers(port: int) -> bool:
    try:
        await scrape(port)
    except httpx.TransportError:
        return False
    return True


@pytest.mark.slow
async def test_a_worker_process_counts_and_times_the_jobs_it_ran_on_its_metrics_port(
    worker_port: int, producer: aqueue.App
) -> None:
    async with producer:
        jobs = [await producer.enqueue(ADD, n, n) for n in range(3)]
        for job in jobs:
            await job.result(timeout=15)
    await eventually(lambda: _answers(worker_port), timeout=15)

    samples = await scrape(worker_port)
    labels = {"queue": "default", "task": ADD}
    assert value(samples, "aqueue_jobs_started_total", **labels) == 3
    assert value(samples, "aqueue_jobs_finished_total", **labels, status="succeeded") == 3
    assert value(samples, "aqueue_job_duration_seconds_count", **labels) == 3
    assert value(samples, "aqueue_job_queue_latency_seconds_count", **labels) == 3
    assert value(samples, "aqueue_jobs_in_progress", **labels) == 0
    assert value(samples, "aqueue_refused_acks_total") == 0
    assert value(samples, "aqueue_queue_jobs", queue="default", status="queued") == 0


@pytest.mark.slow
@pytest.mark.parametrize("worker_port", [2], indirect=True)
async def test_the_metrics_port_of_worker_processes_sums_their_jobs(
    worker_port: int, producer: aqueue.App
) -> None:
    """``aqueue worker -p 2 --metrics-port P``: one endpoint, whatever child ran each job."""
    async with producer:
        jobs = [await producer.enqueue(ADD, n, n) for n in range(10)]
        for job in jobs:
            await job.result(timeout=15)
    await eventually(lambda: _answers(worker_port), timeout=15)

    samples = await scrape(worker_port)
    labels = {"queue": "default", "task": ADD}
    assert value(samples, "aqueue_jobs_started_total", **labels) == 10
    assert value(samples, "aqueue_jobs_finished_total", **labels, status="succeeded") == 10
    assert value(samples, "aqueue_jobs_in_progress", **labels) == 0


@pytest.mark.slow
async def test_a_worker_process_shows_a_running_job_in_progress(
    worker_port: int, producer: aqueue.App
) -> None:
    async with producer:
        job = await producer.enqueue(NAP, 2.0)

        async def running() -> bool:
            try:
                samples = await scrape(worker_port)
            except httpx.TransportError:
                return False
            return value(samples, "aqueue_jobs_in_progress", queue="default", task=NAP) == 1

        await eventually(running, timeout=15)
        assert await job.result(timeout=15) == "rested"


@pytest.mark.slow
async def test_a_supervisors_endpoint_sums_the_metrics_of_its_worker_processes(
    server: RedisServer, namespace: str, producer: aqueue.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # set by serve_children
    port = free_port()
    child_ended = serve_children(port, addr="127.0.0.1")
    children = [
        subprocess.Popen(  # noqa: ASYNC220 - starts the process, does not wait for it
            [sys.executable, "-m", "tests.metrics_child"],
            env=cli_env(server, namespace),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    labels = {"queue": "default", "task": NAP}
    try:
        async with producer:
            naps = [await producer.enqueue(NAP, 1.5) for _ in range(2)]

            async def both_running() -> bool:
                samples = await scrape(port)
                return value(samples, "aqueue_jobs_in_progress", **labels) == 2

            await eventually(both_running, timeout=15)
            for job in naps:
                assert await job.result(timeout=15) == "rested"
        samples = await scrape(port)
        assert value(samples, "aqueue_jobs_started_total", **labels) == 2
        assert value(samples, "aqueue_jobs_finished_total", **labels, status="succeeded") == 2
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=15)
            child_ended(child.pid)


async def test_queue_depth_is_read_from_redis_when_scraped(app: aqueue.App) -> None:
    @app.task
    async def later() -> None: ...

    registry = CollectorRegistry()
    port = free_port()
    worker = aqueue.Worker(app)
    serve_metrics(worker, port, addr="127.0.0.1", registry=registry)
    await app.queue().pause()
    for _ in range(4):
        await later.enqueue()
    async with worker:
        samples = await scrape(port)
    assert value(samples, "aqueue_queue_jobs", queue="default", status="queued") == 4
    assert value(samples, "aqueue_queue_jobs", queue="default", status="running") == 0


async def test_failures_and_retries_are_counted_by_status(app: aqueue.App) -> None:
    registry = CollectorRegistry()
    app.add_middleware(Metrics(registry=registry))

    @app.task(retries=1, backoff=aqueue.backoff.fixed(0))
    async def flaky() -> None:
        raise ValueError("no luck")

    job = await flaky.enqueue()
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await job.result(timeout=5)

    labels = {"queue": "default", "task": flaky.name}
    finished = "aqueue_jobs_finished_total"
    assert registry.get_sample_value(finished, {**labels, "status": "retried"}) == 1
    assert registry.get_sample_value(finished, {**labels, "status": "failed"}) == 1
    assert registry.get_sample_value("aqueue_jobs_started_total", labels) == 2


async def test_a_producer_counts_the_jobs_it_enqueues(app: aqueue.App) -> None:
    registry = CollectorRegistry()
    app.add_middleware(Metrics(registry=registry))

    @app.task
    async def ping() -> None: ...

    await ping.enqueue()
    await ping.enqueue()
    labels = {"queue": "default", "task": ping.name}
    assert registry.get_sample_value("aqueue_jobs_enqueued_total", labels) == 2


async def test_metrics_are_named_aqueue_and_labelled_by_queue_task_and_status_only(
    app: aqueue.App,
) -> None:
    @app.task
    async def ping() -> None: ...

    registry = CollectorRegistry()
    port = free_port()
    worker = aqueue.Worker(app)
    serve_metrics(worker, port, addr="127.0.0.1", registry=registry)
    job = await ping.enqueue()
    async with worker:
        await job.result(timeout=5)
        samples = await scrape(port)

    assert samples
    assert all(sample.name.startswith("aqueue_") for sample in samples)
    labels = {label for sample in samples for label in sample.labels}
    assert labels <= {"queue", "task", "status", "le"}  # le: a histogram's buckets


def test_without_prometheus_client_the_import_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "aqueue.contrib.prometheus")
    with pytest.raises(ImportError, match=r"aqueue-redis\[prometheus\]"):
        importlib.import_module("aqueue.contrib.prometheus")
