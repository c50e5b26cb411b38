"""``aqueue dead-letters ls|replay|purge``: a queue's dead letters."""

from __future__ import annotations

import click

from .._inspect import refuse_unknown_queues
from ..cli import (
    _fail_cleanly,
    app_argument,
    load_app,
    loop_option,
    run_async,
)
from ..cli import main as cli
from ._output import format_table
from ._queues import confirm_for_known_queue

single_queue_option = click.option(
    "-q",
    "--queue",
    "queue_name",
    default=None,
    show_envvar=True,
    envvar="AQUEUE_QUEUE",
    help="The queue. Default: the app's default queue.",
)


@cli.group("dead-letters")
def dead_letters() -> None:
    """Inspect, replay or purge a queue's dead letters."""


@dead_letters.command("ls")
@app_argument
@single_queue_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@loop_option
@_fail_cleanly
def dead_letters_ls(app_path: str, queue_name: str | None, limit: int, loop: str) -> None:
    """List the oldest dead letters with the reason each was dead-lettered."""
    app = load_app(app_path)

    queue = app.queue(queue_name)

    async def collect() -> list[list[str]]:
        async with app:
            await refuse_unknown_queues(app, [queue.name])
            letters = await queue.dead_letters(limit)
        return [
            [
                letter.dead_at.strftime("%Y-%m-%d %H:%M:%S"),
                letter.task or "-",
                letter.job_id or "-",
                letter.reason,
            ]
            for letter in letters
        ]

    rows = run_async(collect, loop)
    if not rows:
        click.echo("no dead letters")
        return
    click.echo(format_table(["dead at (UTC)", "task", "job", "reason"], rows, numeric=False))


@dead_letters.command("replay")
@app_argument
@single_queue_option
@loop_option
@_fail_cleanly
def dead_letters_replay(app_path: str, queue_name: str | None, loop: str) -> None:
    """Put every dead letter back into its queue, to run again from attempt 1."""
    app = load_app(app_path)
    queue = app.queue(queue_name)

    async def replay() -> int:
        async with app:
            await refuse_unknown_queues(app, [queue.name])
            return await queue.replay_dead()

    click.echo(f"replayed {run_async(replay, loop)} job(s) into {queue.name}")


@dead_letters.command("purge")
@app_argument
@single_queue_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@loop_option
@_fail_cleanly
def dead_letters_purge(app_path: str, queue_name: str | None, yes: bool, loop: str) -> None:
    """Delete every dead letter of the queue."""
    app = load_app(app_path)
    queue = app.queue(queue_name)

    async def purge() -> int:
        async with app:
            question = f"delete every dead letter of {queue.name}?"
            await confirm_for_known_queue(app, queue.name, question, yes=yes)
            return await queue.purge()

    click.echo(f"deleted {run_async(purge, loop)} dead letter(s) from {queue.name}")
