"""The aqueue command, run as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import click
import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.cli import load_app
from aqueue.testing import RedisServer
from tests.helpers import eventually, hiding

# The workers and commands are processes: the test's own loop makes no difference.
ONE_LOOP = True
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env(server: RedisServer, namespace: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "AQUEUE_URL": server.url,
        "AQUEUE_TEST_NAMESPACE": namespace,
        "PYTHONPATH": ROOT,
        **extra,
    }


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aqueue", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        cwd=ROOT,
    )


@pytest.fixture
def cli_app(server: RedisServer, namespace: str) -> aqueue.App:
    """A producer for the CLI's app: it enqueues by name, without the tasks' code."""
    return aqueue.App(server.url, namespace=namespace)


async def test_the_worker_command_runs_jobs_and_exits_0_on_sigterm(
    server: RedisServer, namespace: str, cli_app: aqueue.App
) -> None:
    process = subprocess.Popen(  # noqa: ASYNC220 - starts the process, does not wait for it
        [sys.executable, "-m", "aqueue", "worker", "tests.cli_app:app", "-c", "10"],
        env=cli_env(server, namespace),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with cli_app:
            job = await cli_app.enqueue("tests.cli_app.add", 2, 3)
            assert await job.result(timeout=15) == 5
            slow = await cli_app.enqueue("tests.cli_app.nap", 0.5)
            await eventually(lambda: _is_running(slow))
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=15)
            assert await slow.result(timeout=1) == "rested"  # finished before the exit
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert f"job {job.id} tests.cli_app.add succeeded" in output
    assert "SIGTERM: stopping" in output


async def _is_running(job: aqueue.Job[object]) -> bool:
    return await job.status() is aqueue.JobStatus.RUNNING


def test_a_wrong_app_path_is_a_one_line_error(server: RedisServer, namespace: str) -> None:
    for target, message in [
        ("tests.missing_module:app", "cannot import module 'tests.missing_module'"),
        ("tests.cli_app:not_an_app", "tests.cli_app.not_an_app is int, not an aqueue.App"),
        ("tests.cli_app", "is not of the form 'module:app'"),
    ]:
        result = run_cli("worker", target, env=cli_env(server, namespace))
        assert result.returncode == 2
        assert message in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.slow
async def test_the_worker_command_waits_for_a_server_that_is_not_up_yet(
    server: RedisServer, namespace: str
) -> None:
    late = RedisServer(server.binary)
    with tempfile.TemporaryFile("w+") as log:
        process = start_worker(late, namespace, log)
        try:
            await eventually(lambda: _logged(log, "retrying with backoff"), timeout=15)
            with late:
                async with aqueue.App(late.url, namespace=namespace) as producer:
                    job = await producer.enqueue("tests.cli_app.add", 2, 3)
                    assert await job.result(timeout=15) == 5
                process.send_signal(signal.SIGTERM)
                assert process.wait(15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = _read(log)
    assert f"cannot reach Redis at {late.url} to start" in output
    assert "Traceback" not in output


async def test_the_worker_command_waits_for_a_server_that_takes_no_writes_yet(
    namespace: str,
) -> None:
    """As in a failover: started against the old master, now a read-only replica, the worker
    waits (and says why) instead of exiting, and serves once the server takes writes."""
    with RedisServer.valkey() as replica:
        admin = Redis.from_url(replica.url)
        try:
            await admin.replicaof("127.0.0.1", 1)  # a master that is not there
            with tempfile.TemporaryFile("w+") as log:
                process = start_worker(replica, namespace, log)
                try:
                    await eventually(lambda: _logged(log, "retrying with backoff"), timeout=15)
                    assert process.poll() is None
                    await admin.replicaof("NO", "ONE")
                    async with aqueue.App(replica.url, namespace=namespace) as producer:
                        job = await producer.enqueue("tests.cli_app.add", 2, 3)
                        assert await job.result(timeout=15) == 5
                    process.send_signal(signal.SIGTERM)
                    assert process.wait(15) == 0
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                output = _read(log)
        finally:
            await admin.aclose()
    assert "read only replica" in output
    assert "Traceback" not in output


@pytest.mark.slow
async def test_a_second_sigint_exits_at_once_and_hands_a_running_sync_task_back(
    server: RedisServer, namespace: str, cli_app: aqueue.App
) -> None:
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryFile("w+") as next_log:
        first = start_worker(server, namespace, log)
        following = None
        try:
            async with cli_app:
                job = await cli_app.enqueue("tests.cli_app.doze_once", 15)
                await eventually(lambda: _is_running(job), timeout=10)
                first.send_signal(signal.SIGINT)
                await eventually(lambda: _logged(log, "running job(s)"))
                first.send_signal(signal.SIGINT)
                began = time.monotonic()
                assert await asyncio.to_thread(first.wait, 10) == 0
                assert time.monotonic() - began < 2.0
                following = start_worker(server, namespace, next_log)
                assert await job.result(timeout=15) == 2  # run again, from the start
        finally:
            for process in (first, following):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
        output = _read(log)
    assert "handing 1 unfinished job(s) back to the queue" in output
    assert "without writing" not in output
    assert "Traceback" not in output


def start_worker(server: RedisServer, namespace: str, log: IO[str]) -> subprocess.Popen[bytes]:
    """An ``aqueue worker`` process of the CLI's app, its output going to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "aqueue", "worker", "tests.cli_app:app"],
        env=cli_env(server, namespace),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _logged(log: IO[str], text: str) -> bool:
    return text in _read(log)


def _read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def test_refused_credentials_are_a_one_line_error(server: RedisServer, namespace: str) -> None:
    url = server.url.replace("redis://", "redis://nobody:wrong@")
    result = run_cli("worker", "tests.cli_app:app", env=cli_env(server, namespace, AQUEUE_URL=url))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: Redis at redis://nobody:***@")
    assert "refused the credentials" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_worker_command_without_queues_serves_every_queue_the_app_names(
    server: RedisServer, namespace: str
) -> None:
    process = subprocess.Popen(  # noqa: ASYNC220 - starts the process, does not wait for it
        [sys.executable, "-m", "aqueue", "worker", "tests.queues_app:app"],
        env=cli_env(server, namespace),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        routes = {"emails.*": "emails", "reports.*": "reports"}
        async with aqueue.App(server.url, namespace=namespace, routes=routes) as producer:
            sent = await producer.enqueue("emails.send", "a@b.c")
            routed = await producer.enqueue("reports.weekly")
            assert await sent.result(timeout=15) == "sent to a@b.c"
            assert await routed.result(timeout=15) == "reported"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "queues:     billing, default, emails, reports, yearly" in output  # the banner


def test_options_also_read_aqueue_environment_variables(
    server: RedisServer, namespace: str
) -> None:
    env = cli_env(server, namespace, AQUEUE_CONCURRENCY="0")
    result = run_cli("worker", "tests.cli_app:app", env=env)
    assert result.returncode == 2
    assert "0 is not in the range x>=1" in result.stderr


async def test_status_prints_a_table_of_the_queues(
    server: RedisServer, namespace: str, cli_app: aqueue.App
) -> None:
    async with cli_app:
        await cli_app.enqueue("tests.cli_app.add", 1, 1)
        await cli_app.enqueue("tests.cli_app.add", 2, 2)
    result = run_cli(
        "status", "tests.cli_app:app", "--loop", "asyncio", env=cli_env(server, namespace)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "queue    queued  scheduled  running  dead  workers  paused  jobs/s",
        "default       2          0        0     0        0      no     0.0",
        "",
        "no live workers",
    ]


async def test_cancel_cancels_jobs_by_id_and_says_which_had_ended(
    server: RedisServer, namespace: str, cli_app: aqueue.App
) -> None:
    async with cli_app:
        waiting = await cli_app.enqueue("tests.cli_app.add", 1, 1)
    result = run_cli(
        "cancel", "tests.cli_app:app", waiting.id, waiting.id, env=cli_env(server, namespace)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{waiting.id}: cancelled",
        f"{waiting.id}: already ended",
    ]
    async with cli_app:
        assert await cli_app.job(waiting.id).status() is aqueue.JobStatus.CANCELLED


async def test_cancel_goes_on_past_an_unknown_id_and_then_exits_1(
    server: RedisServer, namespace: str, cli_app: aqueue.App
) -> None:
    async with cli_app:
        first = await cli_app.enqueue("tests.cli_app.add", 1, 1)
        second = await cli_app.enqueue("tests.cli_app.add", 2, 2)
    unknown = "default:" + "f" * 32
    result = run_cli(
        "cancel", "tests.cli_app:app", first.id, unknown, second.id, env=cli_env(server, namespace)
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{first.id}: cancelled", f"{second.id}: cancelled"]
    assert result.stderr.startswith(f"error: no record of job {unknown}")
    async with cli_app:
        assert await cli_app.job(second.id).status() is aqueue.JobStatus.CANCELLED


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory, the current one, with a package ``walkshop`` whose ``tasks``
    module holds an app named ``app``."""
    package = tmp_path / "walkshop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("import aqueue\n\napp = aqueue.App()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Imported anew by each test: another test's project is another directory.
    for name in [name for name in sys.modules if name.startswith("walkshop")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def app_path_error(target: str) -> str:
    with pytest.raises(click.BadParameter) as caught:
        load_app(target)
    return caught.value.format_message()


def test_an_app_path_written_as_a_file_names_the_module_to_write_instead(project: Path) -> None:
    message = app_path_error("walkshop/tasks.py:app")
    assert "is a file path" in message
    assert "'walkshop.tasks:app' from this directory" in message


def test_a_module_that_imports_a_missing_package_names_that_package(project: Path) -> None:
    (project / "walkshop" / "needs.py").write_text("import walk_not_installed\n")
    message = app_path_error("walkshop.needs:app")
    assert "imports 'walk_not_installed', which is not installed" in message
    assert "cannot import module" not in message


def test_an_app_path_naming_no_app_suggests_the_modules_app(project: Path) -> None:
    assert "did you mean 'walkshop.tasks:app'?" in app_path_error("walkshop.tasks:ap")
    assert "did you mean 'walkshop.tasks:app'?" in app_path_error("walkshop.tasks")


def worker_start_output(app_path: str, *flags: str, env: dict[str, str], cwd: Path) -> str:
    """What the worker command prints up to the line that says it serves."""
    output = []
    with subprocess.Popen(
        [sys.executable, "-m", "aqueue", "worker", app_path, *flags],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                output.append(line)
                if "serving" in line:
                    break
        finally:
            process.kill()
    return "".join(output)


def test_a_worker_whose_app_has_no_task_says_to_name_the_module_of_the_tasks(
    server: RedisServer, namespace: str, project: Path
) -> None:
    (project / "walkshop" / "bare.py").write_text(
        "import os\nimport aqueue\n\n"
        "app = aqueue.App(namespace=os.environ['AQUEUE_TEST_NAMESPACE'])\n"
    )
    output = worker_start_output("walkshop.bare:app", env=cli_env(server, namespace), cwd=project)
    assert "importing walkshop.bare registered no task" in output


def test_a_worker_told_a_queue_the_app_does_not_name_warns_of_it(
    server: RedisServer, namespace: str
) -> None:
    output = worker_start_output(
        "tests.cli_app:app", "-q", "emials", env=cli_env(server, namespace), cwd=Path(ROOT)
    )
    assert "the app names no queue emials" in output


@pytest.mark.parametrize(
    ("flag", "package", "extra"),
    [
        (["--metrics-port", "0"], "prometheus_client", "prometheus"),
        (["--reload"], "watchfiles", "reload"),
    ],
)
def test_a_flag_whose_extra_is_not_installed_names_it_in_one_line_and_exits_2(
    server: RedisServer,
    namespace: str,
    tmp_path: Path,
    flag: list[str],
    package: str,
    extra: str,
) -> None:
    hidden = hiding(tmp_path, package)
    env = cli_env(server, namespace, PYTHONPATH=f"{hidden}{os.pathsep}{ROOT}")
    result = run_cli("worker", "tests.cli_app:app", *flag, env=env)
    assert result.returncode == 2
    assert result.stderr.endswith(f"pip install 'aqueue-redis[{extra}]'\n")
    assert len(result.stderr.splitlines()) == 1, result.stderr
