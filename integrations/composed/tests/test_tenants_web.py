"""django-tenants' real middleware under gunicorn's threads, on a pool smaller
than the thread count, with ``OPTIONS["real_pool"]["replay"]`` on (#18).

Client threads send interleaved requests for random tenants (the Host header
picks the tenant); one in four writes a note, one in two also sets
``app.tenant_id`` with a plain ``set_config`` the replay option records
for that request only (the next request on the same server thread must not
see it). Every response and every row
in every schema must belong to its tenant, the server must never see more
sessions than the pool holds, and each request's connection must go back to
the pool after each query (nothing pinned by django-tenants' ``SET``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import psycopg
import pytest

from integrations.composed.harness import APP_NAME, scratch_database, serve_tenants
from integrations.composed.scenarios import SEED_NOTES
from tests.support.pgserver import DSN_ENV
from tests.support.taskprojects import SessionSampler

pytestmark = pytest.mark.e2e

TENANTS = ["acme", "globex", "initech"]
POOL_SIZE = 3
SERVER_THREADS = 8
CLIENT_THREADS = 8
REQUESTS_PER_CLIENT = 30


def request_notes(base: str, tenant: str, write: str | None, setting: bool) -> dict[str, Any]:
    """One request to ``/notes/`` for ``tenant`` (a POST writing ``write``;
    ``setting``: with ``?setting=1``)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        headers = {"Host": f"{tenant}.localhost"}
        path = "/notes/?setting=1" if setting else "/notes/"
        if write is None:
            conn.request("GET", path, headers=headers)
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode({"text": write})
            conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200, text[-2000:]
        result: dict[str, Any] = json.loads(text)
        return result
    finally:
        conn.close()


class Served(NamedTuple):
    dsn: str
    #: Most sessions of the pool the server showed during the requests.
    peak: int
    #: (tenant, note written or None, the response) of every request.
    results: list[tuple[str, str | None, dict[str, Any]]]


@pytest.fixture(scope="module", params=["native", "dj"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The project on a scratch database and the interleaved requests' results."""
    pool = request.param
    dsn = scratch_database(os.environ[DSN_ENV], f"tenants_web_{pool}")
    env = {"COMPOSED_REPLAY": "1", "COMPOSED_POOL_SIZE": str(POOL_SIZE)}
    with serve_tenants(dsn, TENANTS, pool=pool, threads=SERVER_THREADS, env=env) as base:
        plan = random.Random(18)
        work = []
        for c in range(CLIENT_THREADS):
            tenants = [plan.choice(TENANTS) for _ in range(REQUESTS_PER_CLIENT)]
            work.append(
                [(t, f"{t}-c{c}-r{r}" if r % 4 == 0 else None) for r, t in enumerate(tenants)]
            )

        def client(mine: list[tuple[str, str | None]]) -> list[tuple[str, str | None, Any]]:
            return [(t, w, request_notes(base, t, w, i % 2 == 0)) for i, (t, w) in enumerate(mine)]

        with SessionSampler(dsn, APP_NAME) as sampler:
            with ThreadPoolExecutor(CLIENT_THREADS) as executor:
                per_client = list(executor.map(client, work))
        yield Served(dsn, sampler.peak(), [r for results in per_client for r in results])


def test_every_response_is_its_own_tenants(served: Served) -> None:
    results = served.results
    assert len(results) == CLIENT_THREADS * REQUESTS_PER_CLIENT
    wrong = [
        (tenant, seen["tenant"], seen["search_path"], text)
        for tenant, _, seen in results
        for text in seen["texts"]
        if seen["tenant"] != tenant
        or seen["search_path"] != f"{tenant}, public"
        or not text.startswith(f"{tenant}-")
    ]
    assert wrong == []
    # Each read sees at least the tenant's seed notes: the right table, not
    # an empty one on another path.
    assert min(len(seen["texts"]) for _, _, seen in results) >= SEED_NOTES


def test_recorded_setting_lasts_exactly_one_request(served: Served) -> None:
    results = served.results
    wrong = [
        (tenant, seen["set_setting"], seen["tenant_setting"])
        for tenant, _, seen in results
        # Unset: NULL, or '' on a connection where a borrower had set it.
        if seen["tenant_setting"] not in ([tenant] if seen["set_setting"] else [None, ""])
    ]
    # Half the requests went without it, on server threads that had served
    # one with it before.
    assert sum(seen["set_setting"] for _, _, seen in results) == len(results) // 2
    assert wrong == []


def test_writes_land_in_their_tenants_schema(served: Served) -> None:
    results = served.results
    with psycopg.connect(served.dsn, autocommit=True) as admin:
        for tenant in TENANTS:
            rows = [
                row[0]
                for row in admin.execute(f'SELECT text FROM "{tenant}".notes_app_note ORDER BY id')
            ]
            written = sorted(w for t, w, _ in results if t == tenant and w is not None)
            assert [r for r in rows if not r.startswith(f"{tenant}-")] == []
            assert sorted(r for r in rows if not r.startswith(f"{tenant}-seed-")) == written
    # Each POST's own read saw its note.
    for tenant, write, seen in results:
        if write is not None:
            assert write in seen["texts"], (tenant, write)


def test_at_most_pool_size_server_sessions(served: Served) -> None:
    assert 1 <= served.peak <= POOL_SIZE
    tenants_of: dict[int, set[str]] = {}
    for tenant, _, seen in served.results:
        tenants_of.setdefault(seen["pid"], set()).add(tenant)
    assert len(tenants_of) <= POOL_SIZE
    # Interleaved: the server connections served several tenants each.
    assert all(len(tenants) > 1 for tenants in tenants_of.values()), tenants_of


def test_connection_released_after_each_query(served: Served) -> None:
    results = served.results
    held = [
        (tenant, state)
        for tenant, _, seen in results
        for state in seen["after_each_query"]
        if not state["released"] or state["holders"]
    ]
    assert held == []
