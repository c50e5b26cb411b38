"""Prometheus metrics of jobs and queues, from a middleware and a scrape-time collector.

The worker command serves them with ``aqueue worker APP --metrics-port 9100``. In your own
process:

```python
from aqueue.contrib.prometheus import Metrics, serve_metrics

app.add_middleware(Metrics())          # a producer: counts the jobs it enqueues
serve_metrics(worker, port=9100)       # a worker: the same, plus its queues, on /metrics
```

Every name starts with ``aqueue_``; labels are ``queue``, ``task`` and ``status`` only (never
a job id, which would make a series per job):

| Metric | Type | Labels |
| --- | --- | --- |
| ``aqueue_jobs_enqueued_total`` | counter | queue, task |
| ``aqueue_jobs_started_total`` | counter | queue, task |
| ``aqueue_jobs_finished_total`` | counter | queue, task, status (succeeded, failed, retried) |
| ``aqueue_job_duration_seconds`` | histogram | queue, task |
| ``aqueue_job_queue_latency_seconds`` | histogram | queue, task |
| ``aqueue_jobs_in_progress`` | gauge | queue, task |
| ``aqueue_queue_jobs`` | gauge | queue, status (queued, scheduled, running, dead) |
| ``aqueue_refused_acks_total`` | counter | (none) |

With several worker processes (``aqueue worker -p N``), the supervisor serves one endpoint
with the sums over its children (:func:`serve_children`, prometheus-client's multiprocess
mode); each child only records (``serve_metrics(..., supervised=True)``). Queue depths and
refused acks are per process there and left out: read depths with ``aqueue status``.

Queue latency is the time from when a job was due (enqueued, or promoted from its delay or
backoff) to the start of its run. Queue depths are read from Redis when scraped, at most once
a second however often Prometheus (or several) scrape.

Needs prometheus-client: ``pip install 'aqueue-redis[prometheus]'``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._version import pip_install

try:
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        multiprocess,
        start_http_server,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:
    raise ImportError(
        f"aqueue.contrib.prometheus needs prometheus-client: {pip_install('prometheus')}"
    ) from exc

from redis.exceptions import RedisError

from .._context import JobContext
from .._middleware import CallNext, Middleware, OutgoingJob
from .._queue import QueueStats
from ..exceptions import AqueueError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .._worker import Worker

__all__ = ["Metrics", "QueueCollector", "serve_children", "serve_metrics"]

logger = logging.getLogger("aqueue.metrics")

DEPTH_CACHE_SECONDS = 1.0
"""How long queue depths read at a scrape are reused: scrapes cannot load Redis."""
DEPTH_TIMEOUT = 2.0
"""Seconds a scrape waits for the depths before it reports none (Redis unreachable, say)."""
QUEUE_STATUSES = ("queued", "scheduled", "running", "dead")


class Metrics(Middleware):
    """Middleware that counts and times the app's jobs (see the module's table).

    Args:
        registry: Where the metrics are registered (the default is prometheus-client's
            global registry, the one ``start_http_server`` serves).
    """

    def __init__(self, *, registry: CollectorRegistry = REGISTRY) -> None:
        job = ("queue", "task")
        self.enqueued = Counter(
            "aqueue_jobs_enqueued", "Jobs handed to enqueue.", job, registry=registry
        )
        self.started = Counter("aqueue_jobs_started", "Runs started.", job, registry=registry)
        self.finished = Counter(
            "aqueue_jobs_finished",
            "Runs ended, by outcome: succeeded, failed (for good), retried.",
            (*job, "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "aqueue_job_duration_seconds", "Seconds a run took.", job, registry=registry
        )
        self.latency = Histogram(
            "aqueue_job_queue_latency_seconds",
            "Seconds from when a job was due to the start of its run.",
            job,
            registry=registry,
        )
        self.in_progress = Gauge(
            "aqueue_jobs_in_progress",
            "Runs going on now.",
            job,
            registry=registry,
            # Summed over the live processes in prometheus-client's multiprocess mode.
            multiprocess_mode="livesum",
        )

        self._series: dict[tuple[str, str], _Series] = {}

    def _of(self, queue: str, task: str) -> _Series:
        """The labelled metrics of one queue and task, looked up once: ``labels()`` takes a
        lock and checks its values at every call, a cost paid several times per job."""
        series = self._series.get((queue, task))
        if series is None:
            series = self._series[(queue, task)] = _Series(
                started=self.started.labels(queue, task),
                latency=self.latency.labels(queue, task),
                in_progress=self.in_progress.labels(queue, task),
                duration=self.duration.labels(queue, task),
                succeeded=self.finished.labels(queue, task, "succeeded"),
                failed=self.finished.labels(queue, task, "failed"),
                retried=self.finished.labels(queue, task, "retried"),
            )
        return series

    def on_enqueue(self, job: OutgoingJob) -> None:
        self.enqueued.labels(job.queue, job.task).inc()

    async def on_started(self, job: JobContext) -> None:
        series = self._of(job.queue, job.task)
        series.started.inc()
        # The entry's id says when it entered the stream: when the job was due.
        waited = (datetime.now(UTC) - job.enqueued_at).total_seconds()
        series.latency.observe(max(waited, 0.0))

    async def around_run(self, job: JobContext, call_next: CallNext) -> Any:
        series = self._of(job.queue, job.task)
        series.in_progress.inc()
        began = time.perf_counter()
        try:
            return await call_next()
        finally:
            series.duration.observe(time.perf_counter() - began)
            series.in_progress.dec()

    async def on_succeeded(self, job: JobContext, result: Any) -> None:
        self._of(job.queue, job.task).succeeded.inc()

    async def on_failed(self, job: JobContext, error: Exception) -> None:
        self._of(job.queue, job.task).failed.inc()

    async def on_retried(self, job: JobContext, error: Exception, delay: float) -> None:
        self._of(job.queue, job.task).retried.inc()


@dataclass(frozen=True, slots=True)
class _Series:
    """The metrics of one (queue, task) pair, with their labels applied."""

    started: Counter
    latency: Histogram
    in_progress: Gauge
    duration: Histogram
    succeeded: Counter
    failed: Counter
    retried: Counter


class QueueCollector(Collector):
    """Collects, at each scrape, the depths of a worker's queues and its refused late acks.

    A scrape comes on prometheus-client's server thread; the depths are read on the worker's
    event loop (where its Redis connections live), so :meth:`attach` must be called from it.
    """

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._depths: list[QueueStats] = []
        self._read_at = -DEPTH_CACHE_SECONDS

    def attach(self) -> None:
        """Read depths on the running event loop from now on."""
        self._loop = asyncio.get_running_loop()

    def detach(self) -> None:
        """Stop reading depths (the loop is about to close); scrapes report none."""
        self._loop = None

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "aqueue_refused_acks",
            "Outcomes refused because another worker owned the job's entry by then "
            "(this worker's lease had lapsed).",
            value=self._worker.refused_acks,
        )
        yield refused
        depth = GaugeMetricFamily(
            "aqueue_queue_jobs",
            "Jobs of each queue served by this worker, by status.",
            labels=("queue", "status"),
        )
        for stats in self._read_depths():
            for status in QUEUE_STATUSES:
                depth.add_metric((stats.queue, status), getattr(stats, status))
        yield depth

    def _read_depths(self) -> list[QueueStats]:
        loop = self._loop
        if loop is None or time.monotonic() - self._read_at < DEPTH_CACHE_SECONDS:
            return self._depths
        future = asyncio.run_coroutine_threadsafe(self._stats(), loop)
        try:
            self._depths = future.result(DEPTH_TIMEOUT)
        except (concurrent.futures.TimeoutError, AqueueError, RedisError, OSError) as exc:
            future.cancel()
            # A scrape must answer; the counters are still right without the depths.
            logger.warning("cannot read queue depths for metrics: %s", exc)
            self._depths = []
        self._read_at = time.monotonic()
        return self._depths

    async def _stats(self) -> list[QueueStats]:
        app = self._worker.app
        return [await app.queue(queue).stats() for queue in self._worker.queues]


def serve_metrics(
    worker: Worker,
    port: int,
    *,
    # Every interface by default: Prometheus scrapes from another host, as with exporters.
    addr: str = "0.0.0.0",
    registry: CollectorRegistry = REGISTRY,
    supervised: bool = False,
) -> Metrics:
    """Serve the worker's metrics on ``http://addr:port/metrics`` while it runs.

    Adds :class:`Metrics` to the worker's app and a :class:`QueueCollector` for its queues;
    call it before the worker starts. The endpoint opens when the worker starts and closes
    when it stops. With ``supervised`` (a child of a supervisor that called
    :func:`serve_children`), it only records: the supervisor serves the sums.
    """
    metrics = Metrics(registry=registry)
    worker.app.add_middleware(metrics)
    if supervised:
        return metrics
    queues = QueueCollector(worker)
    registry.register(queues)
    servers: list[Any] = []

    @worker.app.on_worker_start
    def open_endpoint(started: Worker) -> None:
        if started is worker:
            queues.attach()
            server, _ = start_http_server(port, addr, registry=registry)
            servers.append(server)
            logger.info("serving metrics on http://%s:%d/metrics", addr, port)

    @worker.app.on_worker_stop
    def close_endpoint(stopped: Worker) -> None:
        if stopped is worker:
            queues.detach()
            for server in servers:
                server.shutdown()
                server.server_close()
            servers.clear()

    return metrics


def serve_children(
    port: int,
    *,
    # Every interface by default, as serve_metrics.
    addr: str = "0.0.0.0",
) -> Callable[[int], None]:
    """Serve, on ``http://addr:port/metrics``, the sums of the metrics of child processes.

    For a supervisor of worker processes, called before it starts them: it points
    ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (the children inherit it), where each
    child's prometheus-client writes its values. Call what it returns with the pid of each
    child that ended, so that its in-progress gauge stops counting.
    """
    directory = tempfile.mkdtemp(prefix="aqueue-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    registry = CollectorRegistry()
    # prometheus-client leaves these two untyped.
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    start_http_server(port, addr, registry=registry)
    logger.info("serving the worker processes' metrics on http://%s:%d/metrics", addr, port)

    def child_ended(pid: int) -> None:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]

    return child_ended
