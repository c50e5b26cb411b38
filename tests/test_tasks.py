"""Registering tasks and the options they carry."""

from __future__ import annotations

import pytest

import aqueue


def test_a_task_is_named_after_its_module_and_qualified_name() -> None:
    app = aqueue.App()

    @app.task
    async def ping() -> str:
        return "pong"

    assert (
        ping.name
        == f"{__name__}.test_a_task_is_named_after_its_module_and_qualified_name.<locals>.ping"
    )
    assert app.tasks[ping.name] is ping


def test_decorator_options_are_kept_on_the_task() -> None:
    app = aqueue.App(result_ttl=60)

    @app.task(name="emails.send", queue="emails", timeout=30, retries=5)
    async def send(to: str) -> None: ...

    assert (send.name, send._config.queue, send._config.timeout) == ("emails.send", "emails", 30.0)
    assert (send._config.retries, send._config.result_ttl) == (5, 60)


def test_registering_two_tasks_under_one_name_is_an_error() -> None:
    app = aqueue.App()

    @app.task(name="same")
    async def first() -> None: ...

    with pytest.raises(aqueue.TaskRegistrationError, match="already registered"):

        @app.task(name="same")
        async def second() -> None: ...


def test_calling_a_task_runs_the_function_in_the_caller() -> None:
    app = aqueue.App()

    @app.task
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42


def test_options_returns_a_configured_copy_and_leaves_the_task_alone() -> None:
    app = aqueue.App()

    @app.task
    async def work() -> None: ...

    high = work.options(queue="high", result_ttl=0, timeout=5)
    assert (high._config.queue, high._config.result_ttl, high._config.timeout) == ("high", 0, 5.0)
    assert (work._config.queue, work._config.timeout) == ("default", None)


@pytest.mark.parametrize("queue", ["", "has space", "a:b", "{tag}"])
def test_an_invalid_queue_name_is_refused(queue: str) -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="invalid queue"):
        app.task(queue=queue)


def test_a_negative_timeout_is_refused() -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="timeout must be more than zero"):

        @app.task(timeout=-1)
        async def work() -> None: ...


def test_the_url_defaults_to_the_aqueue_url_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUEUE_URL", "redis://example.invalid:6390/2")
    assert aqueue.App().url == "redis://example.invalid:6390/2"
    assert aqueue.App("redis://other:6379/0").url == "redis://other:6379/0"


def test_without_a_url_or_variable_the_app_uses_local_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AQUEUE_URL", raising=False)
    assert aqueue.App().url == "redis://localhost:6379/0"
