"""Steering the fleet: ``aqueue pause``, ``resume`` (a queue) and ``control`` (workers)."""

from __future__ import annotations

import click

from .._control import COMMANDS, send_command
from .._inspect import refuse_unknown_queues
from .._redis._keys import check_name
from ..cli import (
    _fail_cleanly,
    app_argument,
    load_app,
    loop_option,
    run_async,
)
from ..cli import main as cli
from ..exceptions import AqueueError

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
            await refuse_unknown_queues(app, [queue.name for queue in queues])
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


class NoAnswer(AqueueError):
    """``aqueue control``: a worker did not answer in time."""


@cli.command()
@app_argument
@click.argument("command", type=click.Choice(COMMANDS))
@click.option("--worker", "worker_ids", multiple=True, help="A worker's id; repeat for several.")
@click.option("--all", "to_all", is_flag=True, help="Every live worker.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the answers.",
)
@loop_option
@_fail_cleanly
def control(
    app_path: str,
    command: str,
    worker_ids: tuple[str, ...],
    to_all: bool,
    timeout: float,
    loop: str,
) -> None:
    """Send COMMAND to live workers; each that hears it answers.

    ping: each answers "pong". shutdown: each stops gracefully, as on SIGTERM (running jobs
    finish within the grace period, the rest go back to their queues). Name workers with
    --worker (ids from `aqueue workers`) or --all; ping without either reaches all. Exit 1
    when a worker did not answer in time.
    """
    if worker_ids and to_all:
        raise click.UsageError("give --worker or --all, not both")
    if command == "shutdown" and not (worker_ids or to_all):
        raise click.UsageError("shutdown needs --worker ID or --all")
    app = load_app(app_path)

    async def send() -> tuple[dict[str, str], list[str]]:
        async with app:
            return await send_command(app, command, list(worker_ids) or None, timeout)

    answers, silent = run_async(send, loop)
    for worker_id, answer in sorted(answers.items()):
        click.echo(f"{worker_id}: {answer}")
    if not answers and not silent:
        click.echo("no live workers")
    if silent:
        raise NoAnswer(f"no answer within {timeout:g} s from {', '.join(silent)}")
