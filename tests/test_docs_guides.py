"""The code blocks of the frameworks and testing guides that are not included example files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

import aqueue
from aqueue.testing import RedisServer

GUIDES = Path(__file__).resolve().parent.parent / "docs" / "guide"


def blocks(page: str, language: str) -> list[str]:
    """The ``language`` code blocks of a guide, less those that include a file (``--8<--``)."""
    text = (GUIDES / page).read_text()
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
