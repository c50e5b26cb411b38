"""One adapter module per library, each with the same small interface.

Module-level names every adapter defines:

``DISTRIBUTIONS``
    PyPI distributions whose versions the results report.
``HAS_BATCH``
    Whether the library has a batch enqueue API (``Client.enqueue_batch``).
``worker_argv(kind, concurrency) -> list[str]``
    The command that starts one worker process with the library's own worker entry (its CLI).
    ``kind`` is the task the workload runs (``noop``, ``sleep`` or ``echo``).
``settings(kind, concurrency) -> str``
    The same worker settings in words, for the results table.
``Client``
    The producer side, used by the driver inside a running event loop::

        client = Client()
        await client.open()
        handle = await client.enqueue(kind, index)          # one task, one await
        await client.enqueue_batch(kind, indices)           # only when HAS_BATCH
        value = await client.result(handle, timeout)        # the task's return value
        count = await client.queued()                       # tasks waiting in Redis
        await client.close()

Every adapter registers the same three tasks, each taking one integer ``i``: ``noop`` (records
that it ran), ``sleep`` (waits ``BENCH_SLEEP`` seconds without blocking, then records) and
``echo`` (returns ``i + 1``). Settings come from ``BENCH_*`` environment variables; see
:mod:`peers._common`.
"""

PEERS = ("arq", "saq", "taskiq", "streaq", "docket", "celery", "dramatiq")
"""The libraries compared with aqueue, installed from PyPI into ``benchmarks/.venv-peers``."""

LIBRARIES = ("aqueue", *PEERS, "raw")
"""Everything the harness can run; ``raw`` is the redis-py LPUSH/BRPOP floor, not a peer."""

REQUIREMENTS = {
    "arq": ["arq"],
    "saq": ["saq[redis]"],
    # taskiq-redis >= 1.1 needs redis-py >= 8, which arq (< 6) and kombu (< 6.5) refuse; the
    # newest taskiq-redis that fits beside them (1.0.x) imports taskiq.compat.model_dump,
    # which taskiq 0.13 removed. So one environment holds taskiq 0.12 with taskiq-redis 1.0.
    "taskiq": ["taskiq<0.13", "taskiq-redis"],
    "streaq": ["streaq"],
    "docket": ["pydocket"],
    "celery": ["celery[redis]"],
    "dramatiq": ["dramatiq[redis]"],
}
"""What ``pip install`` gets for each peer."""

RESULTS_CHANGE_ENQUEUE = ("aqueue", "saq")
"""Libraries whose enqueue writes something else when results are kept: aqueue a status record
per job, saq the ttl in its job key. The others write the same bytes either way (measured side
by side, 2026-12-01), so their Redis memory per queued task is measured once and stands for both
modes: enqueueing 100,000 tasks twice costs celery alone two minutes of the run."""

COMMON_REQUIREMENTS = ["redis", "hiredis", "uvloop", "matplotlib"]
"""Installed into the peers environment for the driver, the raw floor and the chart."""
