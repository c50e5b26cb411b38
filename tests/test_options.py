"""A task's and a job's options are declared once (aqueue.TaskOptions, aqueue.JobOptions): each
has one check and one default, and what a call sets lands in the task's configuration, which
the enqueue, its middleware and the worker all read."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

import aqueue
from tests.internals import CHECKS, TaskConfig

TASK_OPTIONS: dict[str, Any] = {
    "name": "options.named",
    "queue": "elsewhere",
    "result_ttl": 77,
    "timeout": 7,
    "priority": 8,
    "retries": 3,
    "retry_on": (ValueError,),
    "backoff": aqueue.backoff.fixed(2),
    "dead_letter_failures": True,
    "rate_limit": "10/s",
    "max_concurrency": 2,
}
"""A value other than the default for every option of App.task."""

JOB_OPTIONS: dict[str, Any] = {
    "queue": "elsewhere",
    "result_ttl": 77,
    "timeout": 7,
    "priority": 8,
    "delay": 30,
    "at": datetime(2100, 1, 1, tzinfo=UTC),
    "wait": True,
    "key": "only-one",
    "key_ttl": 30,
    "after": ["default:" + "d" * 32],
    "expires": 60,
}
"""A value other than the default for every option of Task.options."""

NEEDS: dict[str, dict[str, Any]] = {"key_ttl": {"key": "only-one"}}
"""What an option needs set before it (on the task it is compared with)."""


def test_the_cases_cover_every_declared_option() -> None:
    """Adding an option without a case here fails this test."""
    assert set(TASK_OPTIONS) == aqueue.TaskOptions.__optional_keys__
    assert set(JOB_OPTIONS) == aqueue.JobOptions.__optional_keys__


def test_every_option_has_one_check_and_a_default_in_the_task_configuration() -> None:
    declared = aqueue.TaskOptions.__optional_keys__ | aqueue.JobOptions.__optional_keys__
    assert set(CHECKS) == declared
    defaults = {field.name for field in dataclasses.fields(TaskConfig)}
    assert declared <= defaults


def _configuration(task: aqueue.Task[Any, Any]) -> dict[str, Any]:
    config = task._config
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


@pytest.mark.parametrize("option", TASK_OPTIONS)
def test_every_option_set_on_a_task_reaches_its_configuration(option: str) -> None:
    app = aqueue.App()
    plain = app.task(name="options.plain")(_noop)
    given = app.task(**{option: TASK_OPTIONS[option]})(_other)
    changed = {
        name
        for name, value in _configuration(given).items()
        if name not in ("types", "spec") and value != _configuration(plain)[name]
    }
    # Every task's name differs: the one under test (or the function's) is its own.
    assert changed - {"name"} == ({option} - {"name"})
    assert _configuration(given)[option] == CHECKS[option](TASK_OPTIONS[option])


@pytest.mark.parametrize("option", JOB_OPTIONS)
def test_every_option_set_for_a_job_reaches_its_configuration(option: str) -> None:
    app = aqueue.App()
    task = app.task(_noop).options(**NEEDS.get(option, {}))
    copy = task.options(**{option: JOB_OPTIONS[option]})
    changed = {
        name
        for name, value in _configuration(copy).items()
        if name != "spec" and value != _configuration(task)[name]
    }
    assert changed == {option}
    assert _configuration(copy)[option] == CHECKS[option](JOB_OPTIONS[option])


def test_an_option_given_as_none_keeps_the_tasks_own() -> None:
    app = aqueue.App()
    task = app.task(queue="mine", timeout=5, priority=2)(_noop)
    copy = task.options(queue=None, timeout=None, priority=None)
    assert _configuration(copy) == _configuration(task)


def test_a_task_refuses_an_option_of_a_job_and_names_its_own() -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match=r"app.task\(\) takes no option 'delay'"):
        app.task(delay=5)  # type: ignore[call-overload]


def test_a_job_refuses_an_option_of_a_task_and_names_its_own() -> None:
    app = aqueue.App()
    task = app.task(_noop)
    with pytest.raises(aqueue.ConfigurationError, match=r"its options are after, at, delay"):
        task.options(retries=3)  # type: ignore[call-arg]


async def _noop() -> None:
    pass


async def _other() -> None:
    pass
