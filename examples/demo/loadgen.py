"""A closed-loop HTTP/1.1 load generator on plain asyncio streams.

N keep-alive connections each send a request, read the whole response, and send
the next one at once, until the time is up. Every response is recorded as
(end time, latency, outcome).

Why this and not httpx, locust or wrk: the machine has two cores, and the
server under test (one gunicorn process) needs one of them and PostgreSQL the
other. This generator runs in one thread and spends some tens of
microseconds of CPU per request (an async httpx client spends several times
more; locust brings gevent and its own workers), needs nothing beyond the
standard library, and wrk is not pip-installable. It speaks just enough
HTTP/1.1 for this demo: GET, Content-Length or chunked bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from time import perf_counter

OK, POOL_TIMEOUT, ERROR = 0, 1, 2
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")


class LoadGenerator:
    """``connections`` clients requesting ``path_for(rng)`` in a loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int,
        path_for: Callable[[random.Random], str],
        pool_timeout_header: str = "x-pool-timeout",
        request_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.connections = connections
        self.path_for = path_for
        self.timeout_marker = b"\r\n" + pool_timeout_header.lower().encode()
        self.request_timeout = request_timeout
        #: (perf_counter() at the end, seconds, outcome) per response.
        self.samples: list[tuple[float, float, int]] = []
        self.started = 0.0

    async def run(
        self, seconds: float, on_tick: Callable[[float], None] | None = None, tick: float = 1.0
    ) -> None:
        self.started = perf_counter()
        deadline = self.started + seconds
        clients = [asyncio.create_task(self._client(i, deadline)) for i in range(self.connections)]
        ticker = asyncio.create_task(self._tick(deadline, on_tick, tick)) if on_tick else None
        try:
            await asyncio.gather(*clients)
        finally:
            for task in clients:
                task.cancel()
            if ticker is not None:
                ticker.cancel()
            await asyncio.gather(*clients, *([ticker] if ticker else []), return_exceptions=True)

    async def _tick(self, deadline: float, on_tick: Callable[[float], None], tick: float) -> None:
        while perf_counter() < deadline:
            await asyncio.sleep(min(tick, max(0.0, deadline - perf_counter())))
            on_tick(perf_counter() - self.started)

    async def _client(self, idx: int, deadline: float) -> None:
        rng = random.Random(idx)
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        host_header = f"Host: {self.host}:{self.port}\r\n\r\n"
        try:
            while perf_counter() < deadline:
                request = f"GET {self.path_for(rng)} HTTP/1.1\r\n{host_header}".encode()
                t0 = perf_counter()
                close = False
                try:
                    async with asyncio.timeout(self.request_timeout):
                        if writer is None:
                            reader, writer = await asyncio.open_connection(self.host, self.port)
                        assert reader is not None
                        outcome, close = await self._exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    outcome, close = ERROR, True
                t1 = perf_counter()
                self.samples.append((t1, t1 - t0, outcome))
                if close and writer is not None:
                    writer.close()
                    reader = writer = None
                if outcome == ERROR:
                    # A refused or broken connection fails fast: do not spin.
                    await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                writer.close()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bool]:
        """Send one request, read its whole response: (outcome, connection closes)."""
        writer.write(request)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        close = b"\r\nconnection: close" in head
        if match := _CONTENT_LENGTH.search(head):
            await reader.readexactly(int(match.group(1)))
        elif b"\r\ntransfer-encoding: chunked" in head:
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        else:
            await reader.read()
            close = True
        if 200 <= status < 300:
            return OK, close
        return (POOL_TIMEOUT if self.timeout_marker in head else ERROR), close
