"""The aiohttp example, served by aiohttp's test server against real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import aqueue
from examples.aiohttp_app import create_web_app


@pytest.fixture
async def client(app: aqueue.App) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_web_app(app))) as the_client:
        yield the_client


async def test_a_resize_is_enqueued_then_its_events_end_with_the_result(
    client: TestClient[web.Request, web.Application],
) -> None:
    enqueued = await client.post("/resize", params={"width": 640})
    assert enqueued.status == 202
    job_id = (await enqueued.json())["id"]

    events = await (await client.get(f"/jobs/{job_id}/events")).text()
    assert events.startswith("event: progress\n")
    assert events.endswith('"result":{"width":640,"height":480}}\n\n')
    job = await client.get(f"/jobs/{job_id}")
    assert await job.json() == {"status": "succeeded", "result": {"width": 640, "height": 480}}


async def test_a_resize_without_a_width_is_a_bad_request(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post("/resize")
    assert response.status == 400
    assert await response.text() == "give the width as ?width=<pixels>"


@pytest.mark.parametrize("job_id", ["default:0123456789abcdef0123456789abcdef", "nope"])
async def test_a_job_nobody_enqueued_is_404(
    client: TestClient[web.Request, web.Application], job_id: str
) -> None:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status == 404
    assert await response.json() == {"status": "unknown"}
