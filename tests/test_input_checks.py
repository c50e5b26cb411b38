"""Bad values for the App, task options and handles: a ConfigurationError that says what to
pass, raised where the value is written, before anything reaches Redis."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.internals import Keys


@pytest.mark.parametrize("url", ["localhost:6379", "http://localhost:6379/0", ""])
def test_a_url_that_is_no_redis_url_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AQUEUE_URL", raising=False)
    with pytest.raises(aqueue.ConfigurationError, match="must start with redis://"):
        aqueue.App(url or "mysql://db")


def test_a_refused_url_shows_no_password() -> None:
    with pytest.raises(aqueue.ConfigurationError) as refused:
        aqueue.App("http://user:hunter2@localhost")
    assert "hunter2" not in str(refused.value)


def test_a_url_whose_database_is_no_number_is_refused() -> None:
    with pytest.raises(aqueue.ConfigurationError, match="path is the database number"):
        aqueue.App("redis://localhost:6379/jobs")


def test_tls_and_unix_socket_urls_are_taken() -> None:
    assert aqueue.App("rediss://localhost:6380/0").url == "rediss://localhost:6380/0"
    assert aqueue.App("unix:///run/redis.sock").url == "unix:///run/redis.sock"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_connections", 0),
        ("max_connections", "10"),
        ("max_payload_size", "1MB"),
        ("max_payload_size", -1),
        ("max_deliveries", "3"),
        ("max_deliveries", 0),
        ("max_queue_length", "10"),
        ("max_queue_length", -5),
        ("max_queue_length", {"default": 1.5}),
    ],
)
def test_a_count_option_that_is_no_whole_number_is_refused(option: str, value: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="must be a whole number"):
        aqueue.App(**{option: value})  # type: ignore[arg-type]


def test_a_queue_length_limit_per_queue_checks_the_queue_names() -> None:
    with pytest.raises(aqueue.ConfigurationError, match="invalid queue"):
        aqueue.App(max_queue_length={"no spaces": 10})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**16])
def test_a_duration_that_is_not_finite_or_beyond_a_century_is_refused(value: float) -> None:
    app = aqueue.App()

    @app.task
    async def work() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="delay"):
        work.options(delay=value)
    with pytest.raises(aqueue.ConfigurationError, match="timeout"):
        work.options(timeout=value)
    with pytest.raises(aqueue.ConfigurationError, match="result_ttl"):
        work.options(result_ttl=value)
    with pytest.raises(aqueue.ConfigurationError, match="expires"):
        work.options(expires=value)
    with pytest.raises(aqueue.ConfigurationError, match="result_ttl"):
        aqueue.App(result_ttl=value)


def test_a_fraction_of_a_second_of_result_ttl_keeps_the_result_a_second() -> None:
    app = aqueue.App(result_ttl=0.5)

    @app.task
    async def work() -> None: ...

    assert app.result_ttl == 1
    assert work.options(result_ttl=dt.timedelta(milliseconds=200))._config.result_ttl == 1
    assert work.options(key="k", key_ttl=0.1)._config.key_ttl == 1
    assert work.options(result_ttl=0)._config.result_ttl == 0


async def test_a_refused_ttl_writes_nothing(app: aqueue.App, redis: Redis) -> None:
    @app.task
    async def work() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="about 100 years"):
        await work.options(result_ttl=10**16).enqueue()
    assert await redis.exists(Keys(app.namespace, "default").stream) == 0


@pytest.mark.parametrize("name", ["", 123])
def test_a_task_name_that_is_no_non_empty_string_is_refused(name: object) -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="non-empty string"):
        app.task(name=name)  # type: ignore[call-overload]


async def test_enqueueing_a_task_object_by_name_says_to_call_its_own_enqueue(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="math.add")
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(aqueue.ConfigurationError, match=r"app.enqueue\('math.add', \.\.\.\)"):
        await app.enqueue(add, 1, 2)  # type: ignore[arg-type]
    with pytest.raises(aqueue.ConfigurationError, match="non-empty string"):
        await app.enqueue("", 1, 2)
    assert await redis.exists(Keys(app.namespace, "default").stream) == 0


async def test_result_takes_a_timedelta_as_its_timeout(app: aqueue.App) -> None:
    @app.task
    async def never_run() -> None: ...

    job = await never_run.enqueue()
    with pytest.raises(aqueue.ResultTimeout, match=r"within 0\.05 s"):
        await job.result(timeout=dt.timedelta(milliseconds=50))
    with pytest.raises(aqueue.ConfigurationError, match="timeout"):
        await job.result(timeout="5")  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, "50"])
async def test_a_dead_letter_limit_that_is_no_positive_count_is_refused(
    app: aqueue.App, limit: object
) -> None:
    queue = app.queue()
    with pytest.raises(aqueue.ConfigurationError, match="limit must be a whole number"):
        await queue.dead_letters(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(aqueue.ConfigurationError, match="limit must be a whole number"):
        await queue.replay_dead_letters(limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("job_id", [123, b"default:abc", None])
def test_a_job_id_that_is_no_string_is_refused(job_id: object) -> None:
    with pytest.raises(aqueue.JobNotFound, match="a job id is a string"):
        aqueue.App().job(job_id)  # type: ignore[arg-type]


def test_a_string_that_is_no_job_id_is_refused() -> None:
    with pytest.raises(aqueue.JobNotFound, match="is not an aqueue job id"):
        aqueue.App().job("no-colon")


def test_after_takes_jobs_or_job_ids_only() -> None:
    app = aqueue.App()

    @app.task
    async def work() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="after= takes a job or a job id"):
        work.options(after=123)  # type: ignore[arg-type]
    with pytest.raises(aqueue.JobNotFound, match="a job id is a string"):
        work.options(after=[123])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("option", "value"), [("concurrency", 0), ("concurrency", "10"), ("threads", 0)]
)
def test_a_worker_count_that_is_no_whole_number_is_refused(option: str, value: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match=f"{option} must be a whole number"):
        aqueue.Worker(aqueue.App(), **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("retries", [-1, 1.5, True])
def test_a_retry_count_that_is_no_whole_number_is_refused(retries: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="retries must be a whole number"):
        aqueue.App().task(retries=retries)  # type: ignore[call-overload]


async def test_a_url_naming_a_database_the_server_lacks_says_so(server: RedisServer) -> None:
    app = aqueue.App(server.url.rsplit("/", 1)[0] + "/99")
    with pytest.raises(aqueue.ConfigurationError, match="no database of that number"):
        async with app:
            await app.queue("default").stats()
