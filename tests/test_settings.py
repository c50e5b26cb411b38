"""App settings from AQUEUE_* environment variables: argument > environment > default."""

from __future__ import annotations

import dataclasses

import pytest

import aqueue
from tests.internals import Settings, env_name

ALL_SET = {
    "AQUEUE_URL": "redis://cache.internal:6380/2",
    "AQUEUE_NAMESPACE": "billing",
    "AQUEUE_DEFAULT_QUEUE": "low",
    "AQUEUE_RESULT_TTL": "60",
    "AQUEUE_LEASE": "12.5",
    "AQUEUE_MAX_PAYLOAD_SIZE": "2048",
    "AQUEUE_MAX_RESULT_SIZE": "4096",
    "AQUEUE_MAX_CONNECTIONS": "8",
    "AQUEUE_MAX_DELIVERIES": "3",
    "AQUEUE_ROUTES": '{"emails.*": "emails"}',
    "AQUEUE_MAX_QUEUE_LENGTH": '{"emails": 100}',
    "AQUEUE_EVENTS": "yes",
    "AQUEUE_UNKNOWN_TASK_GRACE": "90",
    "AQUEUE_KEPT_ARGUMENTS_SIZE": "256",
}


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment without the settings' variables."""
    for field in dataclasses.fields(Settings):
        monkeypatch.delenv(env_name(field.name), raising=False)


def test_every_app_setting_but_the_serializer_has_an_environment_variable() -> None:
    names = {env_name(field.name) for field in dataclasses.fields(Settings)} - {"AQUEUE_ORIGINS"}
    assert names == set(ALL_SET)


def test_every_setting_comes_from_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in ALL_SET.items():
        monkeypatch.setenv(variable, value)
    app = aqueue.App()
    assert (app.url, app.namespace, app.default_queue) == (
        "redis://cache.internal:6380/2",
        "billing",
        "low",
    )
    assert (app.result_ttl, app.lease, app.max_payload_size, app.max_result_size) == (
        60,
        12.5,
        2048,
        4096,
    )
    assert (app.redis.connection_pool.max_connections, app.max_deliveries) == (8, 3)
    assert app.route("emails.send") == "emails"
    assert (app.max_queue_length("emails"), app.max_queue_length("other")) == (100, 0)
    assert app.events_limit > 0
    assert app.unknown_task_grace == 90
    assert app.kept_arguments_size == 256


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUEUE_NAMESPACE", "from-env")
    monkeypatch.setenv("AQUEUE_LEASE", "99")
    app = aqueue.App(namespace="from-code", lease=5)
    assert (app.namespace, app.lease) == ("from-code", 5.0)


def test_without_argument_or_variable_each_setting_has_its_default() -> None:
    app = aqueue.App()
    assert (app.url, app.namespace, app.default_queue) == (
        "redis://localhost:6379/0",
        "aqueue",
        "default",
    )
    assert (app.result_ttl, app.lease, app.max_queue_length("default")) == (3600, 30.0, 0)
    assert app.unknown_task_grace == 300


def test_an_empty_variable_leaves_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUEUE_NAMESPACE", "")
    assert aqueue.App().namespace == "aqueue"


def test_the_environment_is_read_when_the_app_is_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = aqueue.App()
    monkeypatch.setenv("AQUEUE_NAMESPACE", "later")
    assert (before.namespace, aqueue.App().namespace) == ("aqueue", "later")


def test_a_variable_of_the_wrong_form_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AQUEUE_LEASE", "ten")
    with pytest.raises(
        aqueue.ConfigurationError,
        match="environment variable AQUEUE_LEASE must be a number of seconds, not 'ten'",
    ):
        aqueue.App()


def test_a_bad_value_from_a_variable_is_blamed_on_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AQUEUE_MAX_CONNECTIONS", "0")
    with pytest.raises(
        aqueue.ConfigurationError, match=r"max_connections \(from AQUEUE_MAX_CONNECTIONS\)"
    ):
        aqueue.App()


def test_a_bad_url_from_the_variable_names_it_and_asks_nothing_more_to_be_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AQUEUE_URL", "localhost:6379")
    with pytest.raises(aqueue.ConfigurationError) as refused:
        aqueue.App()
    assert "the Redis URL in AQUEUE_URL must start with redis://" in str(refused.value)
    assert "set" not in str(refused.value).lower()


async def test_an_unreachable_url_that_was_given_does_not_ask_for_a_url() -> None:
    app = aqueue.App("redis://127.0.0.1:1/0")
    with pytest.raises(aqueue.ConnectionFailed) as failed:
        await app.queue().stats()
    await app.close()
    assert "AQUEUE_URL" not in str(failed.value)


def test_a_flag_variable_that_is_no_flag_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AQUEUE_EVENTS", "maybe")
    with pytest.raises(aqueue.ConfigurationError, match="AQUEUE_EVENTS must be 1, true"):
        aqueue.App()
