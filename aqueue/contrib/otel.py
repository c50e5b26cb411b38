"""OpenTelemetry tracing: one trace from the code that enqueues a job to the job's runs.

```python
from aqueue.contrib.otel import Tracing

app.add_middleware(Tracing())
```

At enqueue, a short ``enqueue <task>`` span (kind PRODUCER) is started under the caller's
current span (a web request's, say) and its context is injected into the job's metadata
(``traceparent``, and ``tracestate`` when set), which travels with the job in its stream
entry. Each run of the job is a ``run <task>`` span (kind CONSUMER) under that context, so
the request, the enqueue and every attempt share one trace. A run that raises records the
exception and ends with an error status. The worker's own polling makes no spans.

Spans go to the tracer provider given, else to the global one (``trace.set_tracer_provider``);
with neither, the API's no-op provider makes tracing cost next to nothing. Needs only
``opentelemetry-api``: ``pip install 'aqueue-redis[otel]'``; the SDK and an exporter are
the application's choice.
"""

from __future__ import annotations

from typing import Any

from .._version import pip_install

try:
    from opentelemetry import propagate, trace
except ImportError as exc:
    raise ImportError(
        f"aqueue.contrib.otel needs opentelemetry-api: {pip_install('otel')}"
    ) from exc

from .._context import JobContext
from .._middleware import CallNext, Middleware, OutgoingJob
from .._version import __version__

__all__ = ["Tracing"]


class Tracing(Middleware):
    """Middleware that carries the trace context with each job and spans each run.

    Args:
        tracer_provider: Where spans go; None for the global provider.
    """

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("aqueue", __version__, tracer_provider=tracer_provider)

    def on_enqueue(self, job: OutgoingJob) -> None:
        attributes = {
            "messaging.system": "aqueue",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "aqueue.task": job.task,
        }
        with self._tracer.start_as_current_span(
            f"enqueue {job.task}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            # Injected under the producer span, so the runs hang below the enqueue.
            propagate.inject(job.metadata)

    async def around_run(self, job: JobContext, call_next: CallNext) -> Any:
        attributes: dict[str, str | int] = {
            "messaging.system": "aqueue",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "aqueue.task": job.task,
            "aqueue.attempt": job.attempt,
            "aqueue.worker": job.worker,
        }
        with self._tracer.start_as_current_span(
            f"run {job.task}",
            context=propagate.extract(job.metadata),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        ):
            return await call_next()
