"""Seeing the fleet: ``aqueue workers``, ``status`` and ``check`` (for probes)."""

from __future__ import annotations

import dataclasses

import click

from .._events import named_queues as _known_queues
from .._inspect import QueueStatus, queue_status, refuse_unknown_queues
from .._redis._errors import redact
from .._redis._keys import check_name
from .._registry import WorkerInfo
from ..cli import (
    _fail_cleanly,
    app_argument,
    load_app,
    loop_option,
    queue_option,
    run_async,
)
from ..cli import main as cli
from ..exceptions import AqueueError
from ._output import format_table, json_option, to_json


class NoLiveWorker(AqueueError):
    """``aqueue check``: a queue has no live worker."""


def _worker_rows(workers: list[WorkerInfo]) -> list[list[str]]:
    return [
        [
            w.id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            str(w.concurrency),
            str(w.running),
            str(w.processed),
            str(w.failed),
            w.started.strftime("%Y-%m-%d %H:%M:%S"),
            w.version,
            ",".join(w.tasks) or "-",
        ]
        for w in workers
    ]


WORKER_HEADER = [
    "worker",
    "host",
    "pid",
    "queues",
    "concurrency",
    "running",
    "processed",
    "failed",
    "started (UTC)",
    "version",
    "tasks",
]


def _print_workers(workers: list[WorkerInfo]) -> None:
    if not workers:
        click.echo("no live workers")
        return
    click.echo(format_table(WORKER_HEADER, _worker_rows(workers), numeric=False))


@cli.command()
@app_argument
@json_option
@loop_option
@_fail_cleanly
def workers(app_path: str, as_json: bool, loop: str) -> None:
    """List APP's live workers.

    Each with its id, host, pid, queues, concurrency, jobs running, counters, start time,
    aqueue version and the tasks it knows.
    """
    app = load_app(app_path)

    async def collect() -> list[WorkerInfo]:
        async with app:
            return await app.workers()

    found = run_async(collect, loop)
    if as_json:
        click.echo(to_json([dataclasses.asdict(w) for w in found]))
    else:
        _print_workers(found)


@cli.command()
@app_argument
@queue_option
@json_option
@loop_option
@_fail_cleanly
def status(app_path: str, queues: tuple[str, ...], as_json: bool, loop: str) -> None:
    """Show APP's queues and live workers.

    Per queue: queued, scheduled, running and dead-lettered jobs, live workers, whether it
    is paused, and jobs run per second lately (summed over the workers' last heartbeats).
    """
    app = load_app(app_path)
    names = [check_name("queue", q) for q in queues] or _known_queues(app)

    async def collect() -> tuple[list[QueueStatus], list[WorkerInfo]]:
        async with app:
            await refuse_unknown_queues(app, names)
            found = await app.workers()
            return await queue_status(app, names, found), found

    statuses, found = run_async(collect, loop)
    if as_json:
        queues_json = [s.as_json() for s in statuses]
        workers_json = [dataclasses.asdict(w) for w in found]
        click.echo(to_json({"queues": queues_json, "workers": workers_json}))
        return
    header = ["queue", "queued", "scheduled", "running", "dead", "workers", "paused", "jobs/s"]
    rows = []
    for s in statuses:
        st = s.stats
        counts = (st.queued, st.scheduled, st.running, st.dead, st.workers)
        paused = "yes" if s.paused else "no"
        rows.append([st.queue, *map(str, counts), paused, f"{s.rate:.1f}"])
    click.echo(format_table(header, rows))
    click.echo()
    _print_workers(found)


@cli.command()
@app_argument
@queue_option
@loop_option
@_fail_cleanly
def check(app_path: str, queues: tuple[str, ...], loop: str) -> None:
    """Exit 0 when Redis answers and each queue has a live worker, else 1 with the reason.

    For liveness and readiness probes. Default queues: every queue APP's tasks and routes
    name.
    """
    app = load_app(app_path)
    names = [check_name("queue", q) for q in queues] or _known_queues(app)

    async def unserved() -> list[str]:
        async with app:
            await refuse_unknown_queues(app, names)
            return [n for n in names if (await app.queue(n).stats()).workers == 0]

    missing = run_async(unserved, loop)
    if missing:
        # Naming where it looked: a worker started with another namespace or URL is the
        # usual reason a worker that runs does not count.
        raise NoLiveWorker(
            f"no live worker serves queue(s) {', '.join(missing)} in namespace "
            f"{app.namespace!r} at {redact(app.url)}; start one with `aqueue worker "
            f"{app_path}`, with this namespace and URL"
        )
    click.echo(f"ok: Redis answers; {', '.join(names)} served")
