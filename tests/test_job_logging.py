"""Log records know the job they came from; only the CLI configures logging."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

import aqueue
from aqueue.testing import RedisServer
from tests.processes import worker_process


class Records(logging.Handler):
    """Keeps what reaches it, through a :class:`aqueue.JobLogFilter`."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(aqueue.JobLogFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def said(self, message: str) -> logging.LogRecord:
        (record,) = [r for r in self.records if r.getMessage() == message]
        return record


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("tasks")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def _fields(record: logging.LogRecord) -> tuple[object, ...]:
    return tuple(
        getattr(record, name)
        for name in ("aqueue_job_id", "aqueue_task", "aqueue_queue", "aqueue_attempt")
    )


async def test_a_record_logged_by_a_task_carries_its_job_id_task_queue_and_attempt(
    app: aqueue.App, records: Records
) -> None:
    @app.task(queue="mail")
    async def send() -> None:
        logging.getLogger("tasks").info("sending")

    async with aqueue.Worker(app, queues=["mail"]):
        job = await send.enqueue()
        await job.result(timeout=5)
    assert _fields(records.said("sending")) == (job.id, send.name, "mail", 1)


async def test_a_record_logged_by_a_synchronous_task_in_its_thread_carries_the_job_too(
    app: aqueue.App, records: Records
) -> None:
    @app.task
    def compute() -> None:
        logging.getLogger("tasks").info("computing")

    async with aqueue.Worker(app):
        job = await compute.enqueue()
        await job.result(timeout=5)
    assert _fields(records.said("computing")) == (job.id, compute.name, "default", 1)


async def test_a_retried_jobs_records_carry_the_attempt_they_came_from(
    app: aqueue.App, records: Records
) -> None:
    @app.task(retries=1, backoff=aqueue.backoff.fixed(0.01))
    async def flaky() -> None:
        attempt = aqueue.current_job().attempt
        logging.getLogger("tasks").info("try %d", attempt)
        if attempt == 1:
            raise ValueError("first time")

    async with aqueue.Worker(app):
        job = await flaky.enqueue()
        await job.result(timeout=5)
    assert _fields(records.said("try 2"))[3] == 2


def test_a_record_logged_outside_a_job_has_a_dash_in_each_field(records: Records) -> None:
    logging.getLogger("tasks").info("idle")
    assert _fields(records.said("idle")) == ("-", "-", "-", "-")


async def test_an_embedded_worker_leaves_the_hosts_logging_as_it_was(app: aqueue.App) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("aqueue").handlers[:])

    @app.task
    async def noop() -> None:
        pass

    async with aqueue.Worker(app):
        await (await noop.enqueue()).result(timeout=5)
    after = (list(root.handlers), root.level, logging.getLogger("aqueue").handlers[:])
    assert after == before


@pytest.mark.slow
async def test_log_format_json_prints_one_object_per_line_with_the_jobs_fields(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace) as producer:
        job = await producer.enqueue("tests.procs_app.chatty", 7)
    with worker_process(server, namespace, "--burst", "--log-format", "json") as worker:
        assert worker.wait(30) == 0
        lines = [json.loads(line) for line in worker.output.splitlines()]
    [said] = [line for line in lines if line["message"] == "working on 7"]
    assert said["logger"] == "procs_app"
    assert said["level"] == "INFO"
    assert (said["job_id"], said["task"], said["queue"], said["attempt"]) == (
        job.id,
        "tests.procs_app.chatty",
        "default",
        1,
    )
    banner = lines[0]
    assert banner["job_id"] is None
