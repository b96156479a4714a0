"""Under uvicorn, async views release connections between queries and leave
none behind when a request ends, is cancelled, or its client disconnects.

The server is a real uvicorn process (``conftest.py``); the client is httpx
with many concurrent requests on a pool of 4. What the process holds comes
from its ``/status`` view (never borrows); what the server sees comes from
``pg_stat_activity``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from integrations.asgi.harness import APP_NAME, POOL_SIZE, ROWS, AsgiServer

pytestmark = pytest.mark.e2e

CONCURRENCY = 32


def app_sessions(dsn: str) -> list[tuple[str, str]]:
    """(state, query) of the server's sessions of the ASGI project."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT coalesce(state, ''), query FROM pg_stat_activity WHERE application_name = %s",
            [APP_NAME],
        ).fetchall()
    return [(str(state), str(query)) for state, query in rows]


def assert_nothing_held(status: dict[str, Any], dsn: str) -> None:
    assert status["holders"] == {}, status["holders"]
    assert status["pool_available"] == status["pool_size"] <= POOL_SIZE, status
    sessions = app_sessions(dsn)
    assert len(sessions) <= POOL_SIZE, sessions
    assert all(state == "idle" for state, _ in sessions), sessions


async def until(
    client: httpx.AsyncClient,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll ``/status`` until ``predicate`` holds (the server has no push channel)."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = (await client.get("/status")).json()
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"/status never satisfied the condition: {status}")
        await asyncio.sleep(0.02)


def run(asgi_server: AsgiServer, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY * 2)
        async with httpx.AsyncClient(base_url=asgi_server.url, timeout=60, limits=limits) as c:
            await scenario(c)

    asyncio.run(main())


def test_concurrent_async_orm_requests_share_four_connections(asgi_server: AsgiServer) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        async def one(n: int) -> httpx.Response:
            path = ("/rows/count", "/rows/list", f"/rows/row-{n % ROWS + 1:04d}", f"/write/c{n}")
            return await client.get(path[n % 4])

        responses = await asyncio.gather(*(one(n) for n in range(CONCURRENCY * 4)))
        assert [r.status_code for r in responses] == [200] * len(responses)
        counts = {r.json()["count"] for r in responses if r.url.path == "/rows/count"}
        assert min(counts) >= ROWS
        listed = next(r.json()["names"] for r in responses if r.url.path == "/rows/list")
        assert len(listed) >= ROWS and listed == sorted(listed)
        pids = {r.json()["pid"] for r in responses if r.url.path.startswith("/write/")}
        # 32 writes in flight at once went through at most 4 backends.
        assert 1 <= len(pids) <= POOL_SIZE
        assert_nothing_held(await until(client, lambda s: s["pool_available"] == s["pool_size"]),
                            asgi_server.dsn)  # fmt: skip

    run(asgi_server, scenario)


def test_connections_are_released_between_queries_of_parked_requests(
    asgi_server: AsgiServer,
) -> None:
    parked = POOL_SIZE * 3

    async def scenario(client: httpx.AsyncClient) -> None:
        requests = [asyncio.create_task(client.get("/parked")) for _ in range(parked)]
        # Three times more requests than connections sit between two queries.
        status = await until(client, lambda s: s["parked"] == parked)
        assert_nothing_held(status, asgi_server.dsn)
        await client.get("/release")
        responses = await asyncio.gather(*requests)
        assert [r.status_code for r in responses] == [200] * parked
        pids = {pid for r in responses for pid in (r.json()["before"], r.json()["after"])}
        assert len(pids) <= POOL_SIZE
        assert_nothing_held(await until(client, lambda s: s["parked"] == 0), asgi_server.dsn)

    run(asgi_server, scenario)


def test_client_disconnect_while_parked_leaves_nothing_behind(asgi_server: AsgiServer) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        requests = [asyncio.create_task(client.get("/parked")) for _ in range(8)]
        await until(client, lambda s: s["parked"] == 8)
        for task in requests:
            task.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        # Django cancels each view at the disconnect: they leave the gate.
        status = await until(client, lambda s: s["parked"] == 0)
        assert_nothing_held(
            await until(client, lambda s: s["pool_available"] == s["pool_size"]), asgi_server.dsn
        )
        assert status["holders"] == {}
        # The server still serves normally afterwards.
        assert (await client.get("/rows/count")).status_code == 200

    run(asgi_server, scenario)


def test_client_disconnect_during_a_query_returns_its_connection(
    asgi_server: AsgiServer,
) -> None:
    # More requests than connections: some are cancelled while waiting for one.
    clients = POOL_SIZE + 2

    async def scenario(client: httpx.AsyncClient) -> None:
        before = (await client.get("/status")).json()["slept"]
        requests = [asyncio.create_task(client.get("/db-sleep?s=2")) for _ in range(clients)]
        await until(client, lambda s: s["sleeping"] == POOL_SIZE)
        for task in requests:
            task.cancel()
        await asyncio.gather(*requests, return_exceptions=True)
        # The queries run to their end in their threads (Python cannot stop a
        # thread), then every connection goes back.
        await until(client, lambda s: s["slept"] >= before + clients and s["sleeping"] == 0)
        status = await until(client, lambda s: s["pool_available"] == s["pool_size"])
        assert_nothing_held(status, asgi_server.dsn)

    run(asgi_server, scenario)


def test_client_disconnect_mid_stream_returns_the_server_side_cursor_connection(
    asgi_server: AsgiServer,
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for _ in range(3):
            async with client.stream("GET", "/rows/stream") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    assert line.startswith(("row-", "c"))
                    break
            # Leaving the block closes the connection mid-stream.
        status = await until(
            client, lambda s: s["holders"] == {} and s["pool_available"] == s["pool_size"]
        )
        assert_nothing_held(status, asgi_server.dsn)
        full = await client.get("/rows/stream")
        assert len(full.text.splitlines()) >= ROWS

    run(asgi_server, scenario)
