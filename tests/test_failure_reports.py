"""What a failure tells the people who look: the worker's log and the producer's traceback."""

from __future__ import annotations

import logging
import traceback

import pytest

import aqueue


async def test_a_printed_task_failed_shows_where_the_task_failed(app: aqueue.App) -> None:
    @app.task
    async def divide(x: int, y: int) -> float:
        return x / y

    async with aqueue.Worker(app):
        job = await divide.enqueue(1, 0)
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=5)
    printed = "".join(traceback.format_exception(failure.value))
    assert "return x / y" in printed
    assert "ZeroDivisionError: division by zero" in printed
    assert "The above exception was the direct cause of the following exception" in printed


async def test_a_final_failure_is_logged_as_an_error_with_its_traceback(
    app: aqueue.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def divide(x: int, y: int) -> float:
        return x / y

    with caplog.at_level(logging.WARNING, logger="aqueue"):
        async with aqueue.Worker(app):
            job = await divide.enqueue(1, 0)
            with pytest.raises(aqueue.TaskFailed):
                await job.result(timeout=5)
    [failed] = [record for record in caplog.records if job.id in record.getMessage()]
    assert failed.levelno == logging.ERROR
    assert "return x / y" in failed.getMessage()


async def test_a_failure_that_is_retried_is_a_warning_without_a_traceback(
    app: aqueue.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(retries=1, retry_on=(ZeroDivisionError,), backoff=aqueue.backoff.fixed(0.01))
    async def divide(x: int, y: int) -> float:
        return x / y

    with caplog.at_level(logging.WARNING, logger="aqueue"):
        async with aqueue.Worker(app):
            job = await divide.enqueue(1, 0)
            with pytest.raises(aqueue.TaskFailed):
                await job.result(timeout=5)
    retried, failed = [record for record in caplog.records if job.id in record.getMessage()]
    assert retried.levelno == logging.WARNING
    assert "Traceback" not in retried.getMessage()
    assert failed.levelno == logging.ERROR
