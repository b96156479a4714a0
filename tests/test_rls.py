"""Row-level security under concurrency: every read sees its own tenant's rows, only.

A table whose policy filters on ``current_setting('app.tenant_id')``, read by
a non-superuser role (row-level security does not apply to superusers) from
32 threads sharing a pool of 4, each request for a random tenant or for none.
The tenant reaches the server either through ``session_context()`` or, as
existing code writes it, through ``SET ROLE`` and ``set_config(..., false)``
under the ``replay`` option. Each request makes several borrows (possibly of
different backends, last used by another tenant); the server's answers are
checked row by row.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.signals import request_finished, request_started
from django.db import connections

from django_pg_real_pool import session_context
from tests.support.concurrent import on_threads
from tests.support.pgstat import admin_dsn, sessions

THREADS = 32
REQUESTS_PER_THREAD = 60
TENANTS = [f"t{i}" for i in range(12)]
READER = "pgrp_rls_reader"
#: Per engine, an alias with a pool of 4 and the replay option (tests/settings.py).
RLS = {"default": "tenant_rls", "djpool": "tenant_rls_dj"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def rls_table(django_db_blocker: Any) -> Iterator[None]:
    """Tenant ``t<i>`` owns ``i + 1`` rows: a count tells the tenants apart too."""
    with django_db_blocker.unblock(), psycopg.connect(admin_dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [READER]).fetchone():
            conn.execute(f"CREATE ROLE {READER} NOLOGIN NOSUPERUSER NOBYPASSRLS")
        conn.execute("DROP TABLE IF EXISTS rls_doc")
        conn.execute("CREATE TABLE rls_doc (tenant text NOT NULL, n int NOT NULL)")
        conn.execute(
            "INSERT INTO rls_doc SELECT 't' || i, n FROM generate_series(0, %s) i, "
            "generate_series(0, i) n",
            [len(TENANTS) - 1],
        )
        conn.execute("ALTER TABLE rls_doc ENABLE ROW LEVEL SECURITY")
        conn.execute(
            "CREATE POLICY by_tenant ON rls_doc "
            "USING (tenant = current_setting('app.tenant_id', true))"
        )
        conn.execute(f"GRANT SELECT ON rls_doc TO {READER}")
        yield
        conn.execute("DROP TABLE rls_doc")


def rows_owned(tenant: str) -> int:
    return TENANTS.index(tenant) + 1


def fetch(alias: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.reads = 0
        self.wrong: list[str] = []

    def check(self, alias: str, tenant: str | None, login: str) -> None:
        """One request's reads, each a borrow of its own."""
        user, setting = fetch(alias, "SELECT current_user, current_setting('app.tenant_id', true)")[
            0
        ]
        rows = fetch(alias, "SELECT tenant, n FROM rls_doc")
        wrong: list[str] = []
        if tenant is None:
            # No context: the server's defaults (the login role, no tenant).
            if user != login or setting not in (None, ""):
                wrong.append(f"no context, saw user={user} tenant={setting!r}")
        else:
            if (user, setting) != (READER, tenant):
                wrong.append(f"{tenant}: saw user={user} tenant={setting!r}")
            if len(rows) != rows_owned(tenant):
                wrong.append(f"{tenant}: {len(rows)} rows instead of {rows_owned(tenant)}")
            wrong += [f"{tenant}: read a row of {row[0]}" for row in rows if row[0] != tenant]
        with self.lock:
            self.requests += 1
            self.reads += 2
            self.wrong += wrong


def fuzz(alias: str, request: Any) -> Tally:
    tally = Tally()
    login = str(connections[alias].settings_dict["USER"])

    def work(barrier: threading.Barrier) -> None:
        rng = random.Random(threading.get_ident())
        barrier.wait()
        for _ in range(REQUESTS_PER_THREAD):
            tenant = rng.choice([*TENANTS, None])
            request(alias, tenant, lambda tenant=tenant: tally.check(alias, tenant, login))

    on_threads(THREADS, work)
    return tally


def with_context(alias: str, tenant: str | None, body: Any) -> None:
    if tenant is None:
        body()
        return
    with session_context(alias, role=READER, settings={"app.tenant_id": tenant}):
        body()


def as_existing_code_writes_it(alias: str, tenant: str | None, body: Any) -> None:
    # A WSGI request: middleware sets the tenant with plain SQL, the view
    # reads, the request ends (close()).
    request_started.send(sender=None)
    try:
        if tenant is not None:
            fetch(alias, f"SET ROLE {READER}")
            fetch(alias, "SELECT set_config('app.tenant_id', %s, false)", [tenant])
        body()
    finally:
        request_finished.send(sender=None)


@pytest.mark.parametrize(
    "how", [with_context, as_existing_code_writes_it], ids=lambda f: f.__name__
)
def test_no_cross_tenant_reads_under_concurrency(
    engine: str, how: Any, admin: psycopg.Connection[Any], figures: Any
) -> None:
    alias = RLS[engine]
    try:
        tally = fuzz(alias, how)
    finally:
        connections[alias].close()
    figures(
        f"rls fuzz {engine}/{how.__name__}: {tally.requests} requests, {tally.reads} reads, "
        f"{len(tally.wrong)} wrong, {len(sessions(admin, alias))} server connections"
    )
    assert tally.wrong == []
    assert tally.requests == THREADS * REQUESTS_PER_THREAD
    assert len(sessions(admin, alias)) <= 4
