"""TCP proxies on loopback between aqueue and a real server: faults of the network, and a
server slow to answer some commands, without a mock of the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from aqueue.testing import RedisServer


class DroppingProxy:
    """A TCP proxy on loopback whose connections the test can cut at any moment."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.drops = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self.drops += 1

    async def close(self) -> None:
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def sending(self, data: bytes) -> None:
        """Called with what a client sends, before it goes on to the server."""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, self.sending), self._pipe(up_reader, writer, None)
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sending: Callable[[bytes], Awaitable[None]] | None,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if sending is not None:
                    await sending(data)
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


class DelayingProxy(DroppingProxy):
    """Holds back each request that holds ``marker`` (a script's SHA1, say) for ``delay``
    seconds, and what follows it on its connection, as a server slow to run it would."""

    def __init__(self, upstream_port: int, *, marker: bytes, delay: float) -> None:
        super().__init__(upstream_port)
        self.marker = marker
        self.delay = delay
        self.delayed = 0

    async def sending(self, data: bytes) -> None:
        if self.marker in data:
            self.delayed += 1
            await asyncio.sleep(self.delay)


@pytest.fixture
async def proxy(server: RedisServer) -> AsyncIterator[DroppingProxy]:
    dropping = DroppingProxy(server.port)
    await dropping.start()
    yield dropping
    await dropping.close()
