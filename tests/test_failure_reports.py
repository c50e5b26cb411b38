"""What a failure tells the people who look: the worker's log and the producer's traceback."""

from __future__ import annotations

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
