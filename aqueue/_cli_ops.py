"""The ``aqueue`` commands that look at and steer a running fleet: status, workers, pause,
resume.

Registered on the ``aqueue`` group by ``cli.py``. Exit codes: 0 on success, 1 for an error a
user can fix (one line on stderr: Redis unreachable, an unknown job), 2 for a usage error.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import click
import orjson

from ._app import App
from ._queue import QueueStats
from ._redis._keys import check_name
from ._registry import WorkerInfo
from .cli import (
    _fail_cleanly,
    _known_queues,
    app_argument,
    format_table,
    load_app,
    loop_option,
    queue_option,
    run_async,
)
from .cli import main as cli

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _to_json(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        raise TypeError

    return orjson.dumps(value, default=default, option=orjson.OPT_INDENT_2)


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
        click.echo(_to_json([dataclasses.asdict(w) for w in found]))
    else:
        _print_workers(found)


@dataclasses.dataclass(frozen=True)
class _QueueStatus:
    stats: QueueStats
    paused: bool
    rate: float
    """Jobs per second the live workers ran from the queue lately (the sum of theirs)."""


async def _queue_status(
    app: App, names: list[str], workers: list[WorkerInfo]
) -> list[_QueueStatus]:
    statuses = []
    for name in names:
        queue = app.queue(name)
        rate = sum(w.rates.get(name, 0.0) for w in workers)
        statuses.append(_QueueStatus(await queue.stats(), await queue.is_paused(), rate))
    return statuses


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

    async def collect() -> tuple[list[_QueueStatus], list[WorkerInfo]]:
        async with app:
            found = await app.workers()
            return await _queue_status(app, names, found), found

    statuses, found = run_async(collect, loop)
    if as_json:
        queues_json = [
            {
                **dataclasses.asdict(s.stats),
                "queued_by_priority": {str(k): v for k, v in s.stats.queued_by_priority.items()},
                "paused": s.paused,
                "rate": s.rate,
            }
            for s in statuses
        ]
        workers_json = [dataclasses.asdict(w) for w in found]
        click.echo(_to_json({"queues": queues_json, "workers": workers_json}))
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


paused_queues_option = click.option(
    "-q",
    "--queue",
    "queue_names",
    multiple=True,
    required=True,
    help="The queue; repeat for several.",
)


def _set_paused(app_path: str, queue_names: tuple[str, ...], loop: str, *, paused: bool) -> None:
    app = load_app(app_path)
    queues = [app.queue(check_name("queue", name)) for name in queue_names]

    async def apply() -> None:
        async with app:
            for queue in queues:
                await (queue.pause() if paused else queue.resume())

    run_async(apply, loop)
    for queue in queues:
        click.echo(f"{queue.name}: {'paused' if paused else 'resumed'}")


@cli.command()
@app_argument
@paused_queues_option
@loop_option
@_fail_cleanly
def pause(app_path: str, queue_names: tuple[str, ...], loop: str) -> None:
    """Stop every worker of APP from reading the queues.

    Running jobs go on; producers still enqueue, and delayed jobs still become due, to wait
    in the queue for `aqueue resume`. Workers learn of it within a fraction of a second.
    """
    _set_paused(app_path, queue_names, loop, paused=True)


@cli.command()
@app_argument
@paused_queues_option
@loop_option
@_fail_cleanly
def resume(app_path: str, queue_names: tuple[str, ...], loop: str) -> None:
    """Let every worker of APP read the queues again."""
    _set_paused(app_path, queue_names, loop, paused=False)
