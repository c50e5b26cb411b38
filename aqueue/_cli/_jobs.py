"""Jobs from the command line: ``aqueue job``, ``enqueue``, ``cancel`` and ``purge``."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from .._inspect import Arguments, job_arguments, job_record
from .._job import JobInfo, JobStatus, json_result
from .._redis._keys import check_name
from ..cli import (
    _fail_cleanly,
    app_argument,
    load_app,
    loop_option,
    run_async,
)
from ..cli import main as cli
from ..exceptions import JobNotFound
from ._output import json_option, to_json, to_json_line
from ._queues import confirm_for_known_queue


def _print_job(record: dict[str, Any]) -> None:
    lines: list[tuple[str, Any]] = [
        ("id", record["id"]),
        ("status", record["status"]),
        ("task", record["task"]),
        ("queue", record["queue"]),
    ]
    if record["arguments"] is not None:
        lines.append(("args", to_json_line(record["arguments"]["args"])))
        lines.append(("kwargs", to_json_line(record["arguments"]["kwargs"])))
    elif record["arguments_size"] is not None:
        lines.append(("args", f"({record['arguments_size']} bytes, not kept)"))
    lines.append(("attempts", record["attempts"]))
    lines.extend(
        (name.replace("_", " "), record[name].isoformat(" ", "milliseconds"))
        for name in ("enqueued_at", "due_at", "started_at", "finished_at")
        if record[name] is not None
    )
    lines.append(("worker", record["worker"]))
    if record["progress"] is not None:
        message = record["progress_message"]
        lines.append(("progress", f"{record['progress']:.0%}" + (f" {message}" if message else "")))
    if record["status"] == "succeeded":
        lines.append(("result", to_json_line(record["result"])))
    error = record["error"]
    if error is not None:
        lines.append(("error", f"{error['type']}: {error['message']}"))
    width = max(len(name) for name, _ in lines) + 1
    for name, value in lines:
        if value is not None:
            click.echo(f"{name + ':':<{width}} {value}")
    if error is not None and error["traceback"]:
        click.echo("traceback:")
        click.echo(error["traceback"].rstrip("\n"))


@cli.command()
@app_argument
@click.argument("job_id", metavar="JOB_ID")
@json_option
@loop_option
@_fail_cleanly
def job(app_path: str, job_id: str, as_json: bool, loop: str) -> None:
    """Show a job's record.

    Status, task, arguments (while it waits in its queue, and once it ran if the app keeps
    them: see kept_arguments_size), attempts, timestamps, worker, progress, and its result
    or error with the traceback. Exit 1 when there is no record.
    """
    app = load_app(app_path)

    async def collect() -> tuple[JobInfo, Arguments]:
        async with app:
            info = await app.job(job_id).info()
            return info, await job_arguments(app, info)

    info, arguments = run_async(collect, loop)
    if info.status is JobStatus.UNKNOWN:
        raise JobNotFound(
            f"no record of job {job_id}: never enqueued, enqueued with result_ttl=0, or its "
            "record expired"
        )
    record = job_record(app, info, arguments)
    if as_json:
        click.echo(to_json(record))
    else:
        _print_job(record)


def _json_value(kind: type, text: str, flag: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint=flag) from None
    if not isinstance(value, kind):
        expected = "an array, e.g. '[1, 2]'" if kind is list else "an object, e.g. '{\"x\": 1}'"
        raise click.BadParameter(f"must be {expected}", param_hint=flag)
    return value


@cli.command()
@app_argument
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", default="[]", help="Positional arguments: a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments: a JSON object.")
@click.option("-q", "--queue", "queue_name", default=None, help="Queue (default: the task's).")
@click.option(
    "--delay", type=click.FloatRange(min=0), default=None, help="Seconds before it may run."
)
@click.option("--wait", is_flag=True, help="Wait for the result and print it (JSON).")
@loop_option
@_fail_cleanly
def enqueue(
    app_path: str,
    task_name: str,
    args_json: str,
    kwargs_json: str,
    queue_name: str | None,
    delay: float | None,
    wait: bool,
    loop: str,
) -> None:
    """Enqueue TASK with JSON arguments and print the job's id.

    With --wait, print the result too; exit 1 when the job failed or was cancelled. -q and
    --delay need a task APP registers; a task it does not know is enqueued by name, to its
    routed queue.
    """
    app = load_app(app_path)
    args = _json_value(list, args_json, "--args")
    kwargs = _json_value(dict, kwargs_json, "--kwargs")
    task = app.tasks.get(task_name)
    if task is None and (queue_name is not None or delay is not None):
        raise click.UsageError(
            f"-q and --delay need a task that {app_path} registers; {task_name!r} is not one "
            f"(known: {', '.join(sorted(app.tasks)) or 'none'})"
        )

    async def send() -> None:
        async with app:
            if task is None:
                job = await app.enqueue(task_name, *args, **kwargs)
            else:
                options = task.options(queue=queue_name, delay=delay)
                job = await options.enqueue(*args, **kwargs)
            click.echo(job.id)
            if wait:
                click.echo(to_json_line(json_result(app, task_name, await job.result())))

    run_async(send, loop)


@cli.command()
@app_argument
@click.option("-q", "--queue", "queue_name", required=True, help="The queue to empty.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@loop_option
@_fail_cleanly
def purge(app_path: str, queue_name: str, yes: bool, loop: str) -> None:
    """Drop every job waiting in a queue (they end as cancelled).

    Running and scheduled jobs are left alone. Asks first, unless --yes.
    """
    app = load_app(app_path)
    queue = app.queue(check_name("queue", queue_name))

    async def drop() -> int:
        async with app:
            question = f"drop every queued job of {queue.name}?"
            await confirm_for_known_queue(app, queue.name, question, yes=yes)
            return await queue.purge_queued()

    click.echo(f"dropped {run_async(drop, loop)} queued job(s) from {queue.name}")


@cli.command()
@app_argument
@click.argument("job_ids", metavar="JOB_ID...", nargs=-1, required=True)
@loop_option
@_fail_cleanly
def cancel(app_path: str, job_ids: tuple[str, ...], loop: str) -> None:
    """Cancel jobs by id: queued ones never run, running ones are stopped."""
    app = load_app(app_path)

    async def cancel_all() -> int:
        # Each id on its own: one unknown id must neither stop the others nor hide what was done.
        failed = 0
        async with app:
            for job_id in job_ids:
                try:
                    cancelled = await app.job(job_id).cancel()
                except JobNotFound as exc:
                    click.echo(f"error: {exc}", err=True)
                    failed += 1
                else:
                    click.echo(f"{job_id}: {'cancelled' if cancelled else 'already ended'}")
        return failed

    if run_async(cancel_all, loop):
        sys.exit(1)
