"""Dead letters of entries another program wrote: aqueue's own fields stay apart from theirs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually
from tests.internals import Keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FOREIGN = {
    b"j": b"default:" + b"e" * 32,
    b"t": b"their.task",
    b"p": b"[[],{}]",
    b"r": b"60",
    b"reason": b"their reason",
    b"dead_at": b"yesterday",
}
"""An entry of another program, with fields of the names aqueue gives a dead letter's own."""


async def _dead_letter_of_foreign_entry(app: aqueue.App, redis: Redis) -> None:
    keys = Keys(app.namespace, "default")
    await redis.xadd(keys.stream, FOREIGN)  # type: ignore[arg-type]
    async with aqueue.Worker(app):

        async def dead() -> bool:
            return await redis.xlen(keys.dead) == 1

        await eventually(dead, timeout=10)


async def test_a_dead_letter_shows_aqueues_reason_and_time_not_the_entrys(
    app: aqueue.App, redis: Redis
) -> None:
    await _dead_letter_of_foreign_entry(app, redis)
    [letter] = await app.queue().dead_letters()
    assert letter.reason.startswith("no task named 'their.task'")
    assert letter.dead_at.year >= 2024
    assert (letter.job_id, letter.task) == (FOREIGN[b"j"].decode(), "their.task")


async def test_a_letter_written_by_hand_without_a_time_reads_with_its_entrys_time(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    await redis.xadd(keys.dead, {b"reason": b"by hand", b"dead_at": b"99999999999999999999"})
    [letter] = await app.queue().dead_letters()
    assert (letter.reason, letter.dead_at.year >= 2024) == ("by hand", True)


async def test_the_cli_lists_the_dead_letter_of_a_foreign_entry(
    app: aqueue.App, redis: Redis, server: RedisServer
) -> None:
    await _dead_letter_of_foreign_entry(app, redis)
    env = {
        **os.environ,
        "AQUEUE_URL": server.url,
        "AQUEUE_TEST_NAMESPACE": app.namespace,
        "PYTHONPATH": ROOT,
    }
    result = await asyncio.to_thread(_cli, env, "ls")
    assert (result.returncode, result.stderr) == (0, "")
    assert "their.task" in result.stdout
    assert "no task named 'their.task'" in result.stdout
    assert "their reason" not in result.stdout


def test_the_cli_says_in_one_line_what_went_wrong_without_a_traceback() -> None:
    env = {**os.environ, "AQUEUE_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": ROOT}
    for command in ("ls", "replay"):
        result = _cli(env, command)
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0")


def _cli(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aqueue", "dead-letters", command, "tests.cli_app:app"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
