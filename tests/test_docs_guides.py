"""The code blocks of the quickstart and the guides that are not included example files."""

from __future__ import annotations

import configparser
import dataclasses
import re
import shlex
import subprocess
import sys
import tomllib
import types
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

import aqueue
from aqueue.testing import RedisServer
from tests.internals import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "docs" / "guide"


def blocks(page: str, language: str, folder: Path = GUIDES) -> list[str]:
    """The ``language`` code blocks of a guide, less those that include a file (``--8<--``)."""
    text = (folder / page).read_text()
    found = re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
    return [block for block in found if "--8<--" not in block]


async def test_the_fastapi_block_of_the_frameworks_guide_streams_a_jobs_events(
    server: RedisServer, namespace: str
) -> None:
    [code] = blocks("frameworks.md", "python")
    scope: dict[str, Any] = {}
    exec(compile(code, "frameworks.md", "exec"), scope)
    app: aqueue.App = scope["app"]
    app.url, app.namespace = server.url, namespace

    @app.task(name="answer")
    async def answer() -> int:
        return 42

    async with LifespanManager(scope["api"]) as manager:
        job = await answer.enqueue()
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get(f"/jobs/{job.id}/events")
    assert response.text.endswith('"result":42}\n\n')


def test_the_configuration_block_of_the_testing_guide_enables_the_plugin() -> None:
    [config] = blocks("testing.md", "toml")
    options = tomllib.loads(config)["tool"]["pytest"]["ini_options"]
    assert options["addopts"] == ["-p", "aqueue.pytest_plugin"]
    assert re.fullmatch(r"[\w.]+:\w+", options["aqueue_app"])


def test_the_configuration_block_of_the_testing_guide_has_the_example_projects_settings() -> None:
    """Copied as it is, the block gives pytest-asyncio every setting it warns about when unset."""
    [config] = blocks("testing.md", "toml")
    options = tomllib.loads(config)["tool"]["pytest"]["ini_options"]
    example = configparser.ConfigParser()
    example.read(ROOT / "examples" / "testing" / "pytest.ini")
    assert set(options) == set(example["pytest"])


@pytest.mark.slow
def test_the_quickstarts_script_prints_the_result_of_the_quickstarts_worker(
    server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    """The quickstart's files, run as it says: a worker of the tasks, then the script."""
    files = {}
    for block in blocks("quickstart.md", "python", ROOT / "docs"):
        first, _, rest = block.partition("\n")
        if first.startswith("# ") and first.endswith(".py"):
            files[first[2:]] = rest
    default_app = 'aqueue.App("redis://localhost:6379/0")'
    assert default_app in files["myproj/tasks.py"]
    files["myproj/tasks.py"] = files["myproj/tasks.py"].replace(
        default_app, f"aqueue.App({server.url!r}, namespace={namespace!r})"
    )
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(code)
    worker = subprocess.Popen(
        [sys.executable, "-m", "aqueue", "worker", "myproj.tasks:app"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        script = subprocess.run(
            [sys.executable, "enqueue.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert script.stdout.splitlines()[1] == "5"


async def test_the_argument_types_block_of_the_quickstart_gives_the_task_its_types(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quickstart = blocks("quickstart.md", "python", ROOT / "docs")
    [code] = [block for block in quickstart if "class Order" in block]
    # Run as a module, as a user's file is: its dataclass's annotations are looked up there.
    module = types.ModuleType("quickstart_types")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "quickstart.md", "exec"), module.__dict__)
    scope = module.__dict__
    app: aqueue.App = scope["app"]
    app.url, app.namespace = server.url, namespace
    order = scope["Order"](uuid.uuid4(), datetime.now(UTC), Decimal("12.50"))
    async with app, aqueue.Worker(app):
        job = await scope["invoice"].enqueue(order, b"\x89PNG")
        order_id, sent = await job.result(timeout=5)
    assert (order_id, type(sent)) == (order.id, datetime)


def test_the_configuration_guide_lists_every_setting_and_its_block_configures_an_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = (GUIDES / "configuration.md").read_text()
    listed = set(re.findall(r"^\| `(AQUEUE_\w+)` \|", page, flags=re.MULTILINE))
    settings = {env_name(field.name) for field in dataclasses.fields(Settings)}
    assert listed == settings - {"AQUEUE_ORIGINS"}
    [exports] = blocks("configuration.md", "bash")
    for line in exports.splitlines():
        variable, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
        monkeypatch.setenv(variable, value)
    app = aqueue.App()
    assert (app.namespace, app.result_ttl, app.route("emails.send")) == ("billing", 600, "emails")
    assert (app.max_queue_length("emails"), aqueue.App(namespace="reports").namespace) == (
        10000,
        "reports",
    )
