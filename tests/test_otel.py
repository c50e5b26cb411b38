"""OpenTelemetry tracing: one trace from the enqueueing code to each run of the job."""

from __future__ import annotations

import importlib
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aqueue
from aqueue.contrib.otel import Tracing


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_the_run_of_a_job_is_in_the_trace_of_the_request_that_enqueued_it(
    app: aqueue.App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app.add_middleware(Tracing(tracer_provider=provider))

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with provider.get_tracer("web").start_as_current_span("POST /sums") as request:
        job = await add.enqueue(2, 3)
    async with aqueue.Worker(app):
        assert await job.result(timeout=5) == 5

    (enqueue,) = named(exporter, f"enqueue {add.name}")
    (run,) = named(exporter, f"run {add.name}")
    trace_id = request.get_span_context().trace_id
    assert enqueue.context is not None
    assert enqueue.context.trace_id == trace_id
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert run.context is not None
    assert run.context.trace_id == trace_id
    assert run.parent is not None
    assert run.parent.span_id == enqueue.context.span_id
    assert run.kind is trace.SpanKind.CONSUMER
    assert run.attributes is not None
    assert run.attributes["messaging.message.id"] == job.id


async def test_a_failed_run_ends_its_span_with_the_error(
    app: aqueue.App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app.add_middleware(Tracing(tracer_provider=provider))

    @app.task
    async def boom() -> None:
        raise ValueError("no luck")

    job = await boom.enqueue()
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await job.result(timeout=5)

    (run,) = named(exporter, f"run {boom.name}")
    assert run.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in run.events] == ["exception"]


async def test_a_worker_that_finds_nothing_to_run_makes_no_spans(
    app: aqueue.App, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app.add_middleware(Tracing(tracer_provider=provider))

    @app.task
    async def idle() -> None: ...

    async with aqueue.Worker(app):
        await app.queue().stats()  # the worker polls meanwhile
    assert exporter.get_finished_spans() == ()


def test_without_opentelemetry_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "aqueue.contrib.otel")
    with pytest.raises(ImportError, match=r"aqueue-redis\[otel\]"):
        importlib.import_module("aqueue.contrib.otel")
