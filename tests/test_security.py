"""Borrowers never see each other's session state or data through a reused connection.

Two tenants, A and B, run concurrently (several threads each) on the same
pool. Each request sets its tenant's session state: a role (``SET ROLE``),
a ``search_path``, a tenant setting (``set_config('app.tenant', ...)``) read
by a row-level security policy, or all three, scoped one of three ways:

* ``pinned``: inside ``pinned()`` (the documented way);
* ``unscoped``: plain statements (the engine keeps the connection until the
  request ends, then resets it);
* ``local``: transaction-scoped (``SET LOCAL``, ``set_config(..., true)``)
  inside ``atomic()``.

Inside the request the tenant must see exactly its own state and rows; the
next borrow, on whatever connection, must see the server defaults and no
tenant's rows. ``pg_backend_pid()`` proves the same backends served both
tenants, so the isolation comes from the reset, not from luck.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from time import monotonic
from typing import Any

import psycopg
import pytest
from django.core.signals import request_finished, request_started
from django.db import connections, transaction

from django_pg_real_pool import pinned
from django_pg_real_pool._counters import counters_by_alias
from tests.support import pgstat
from tests.support.wrappers import SINGLE

THREADS_PER_TENANT = 3
ROUNDS = 12
TENANTS = ("a", "b")
_SUFFIX = f"{os.getpid()}"
STATES = ("role", "search_path", "tenant", "all")
SCOPES = ("pinned", "unscoped", "local")


def role(tenant: str) -> str:
    return f"pgrp_sec_{tenant}_{_SUFFIX}"


@pytest.fixture(scope="module")
def tenants(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Per-tenant roles and schemas, a shared table behind row-level security."""
    with django_db_blocker.unblock(), psycopg.connect(pgstat.admin_dsn(), autocommit=True) as c:
        for t in TENANTS:
            c.execute(f"CREATE ROLE {role(t)} NOLOGIN")
            c.execute(f"CREATE SCHEMA tenant_{t}")
            c.execute(f"CREATE TABLE tenant_{t}.secrets (v text)")
            c.execute(f"INSERT INTO tenant_{t}.secrets VALUES ('secret-{t}')")
            c.execute(f"GRANT USAGE ON SCHEMA tenant_{t} TO {role(t)}")
            c.execute(f"GRANT SELECT ON tenant_{t}.secrets TO {role(t)}")
        c.execute("CREATE TABLE public.secrets (v text)")
        c.execute("INSERT INTO public.secrets VALUES ('public')")
        c.execute("CREATE TABLE public.shared (tenant text, v text)")
        c.execute("INSERT INTO public.shared VALUES ('a', 'row-a'), ('b', 'row-b')")
        c.execute("ALTER TABLE public.shared ENABLE ROW LEVEL SECURITY")
        c.execute(
            "CREATE POLICY by_tenant ON public.shared "
            "USING (tenant = current_setting('app.tenant', true))"
        )
        for t in TENANTS:
            c.execute(f"GRANT SELECT ON public.shared, public.secrets TO {role(t)}")
        try:
            yield
        finally:
            c.execute("DROP TABLE public.shared, public.secrets")
            for t in TENANTS:
                c.execute(f"DROP SCHEMA tenant_{t} CASCADE")
                c.execute(f"DROP OWNED BY {role(t)}")
                c.execute(f"DROP ROLE {role(t)}")


def statements(state: str, scope: str, tenant: str) -> list[tuple[str, list[Any]]]:
    """SQL that sets ``state`` for ``tenant``, session- or transaction-scoped."""
    local = " LOCAL" if scope == "local" else ""
    is_local = "true" if scope == "local" else "false"
    sql: list[tuple[str, list[Any]]] = []
    if state in ("role", "all"):
        sql.append((f"SET{local} ROLE {role(tenant)}", []))
    if state in ("search_path", "all"):
        sql.append((f"SET{local} search_path TO tenant_{tenant}, public", []))
    if state in ("tenant", "all"):
        sql.append((f"SELECT set_config('app.tenant', %s, {is_local})", [tenant]))
    return sql


_PROBE = (
    "SELECT current_user, current_setting('search_path'), "
    "coalesce(current_setting('app.tenant', true), ''), pg_backend_pid(), "
    "(SELECT string_agg(v, ',') FROM secrets), "
    "(SELECT string_agg(v, ',' ORDER BY v) FROM public.shared)"
)


def probe(cursor: Any) -> tuple[Any, ...]:
    cursor.execute(_PROBE)
    return tuple(cursor.fetchone())


def expected(state: str, tenant: str | None, session_user: str) -> dict[str, Any]:
    """What ``probe`` must return for ``tenant`` with ``state`` set (None: clean)."""
    if tenant is None:
        # Superuser, default path, no tenant: RLS is bypassed by the superuser.
        return {"user": session_user, "path": '"$user", public', "tenant": "",
                "secrets": "public", "shared": "row-a,row-b"}  # fmt: skip
    has_role = state in ("role", "all")
    has_path = state in ("search_path", "all")
    has_tenant = state in ("tenant", "all")
    # A tenant role sees shared rows only through the policy (the superuser
    # bypasses it).
    own_rows = f"row-{tenant}" if has_tenant else None
    shared = own_rows if has_role else "row-a,row-b"
    return {
        "user": role(tenant) if has_role else session_user,
        "path": f"tenant_{tenant}, public" if has_path else '"$user", public',
        "tenant": tenant if has_tenant else "",
        "secrets": f"secret-{tenant}" if has_path else "public",
        "shared": shared,
    }


def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    user, path, tenant, _pid, secrets, shared = row
    return {"user": user, "path": path, "tenant": tenant, "secrets": secrets, "shared": shared}


@contextlib.contextmanager
def scoped(scope: str, alias: str) -> Iterator[None]:
    if scope == "pinned":
        with pinned(using=alias):
            yield
    elif scope == "local":
        with transaction.atomic(using=alias):
            yield
    else:
        yield


def borrower(
    alias: str,
    state: str,
    scope: str,
    tenant: str,
    session_user: str,
    start: threading.Barrier,
    pids: set[int],
    problems: list[str],
) -> None:
    wrapper: Any = connections[alias]
    mine = expected(state, tenant, session_user)
    clean = expected(state, None, session_user)
    try:
        start.wait(30)
        for n in range(ROUNDS):
            request_started.send(sender=None)
            try:
                with scoped(scope, alias), wrapper.cursor() as cursor:
                    for sql, params in statements(state, scope, tenant):
                        cursor.execute(sql, params)
                    row = probe(cursor)
            finally:
                # End of request: an unscoped session state goes back reset.
                request_finished.send(sender=None)
            pids.add(row[3])
            if as_dict(row) != mine:
                problems.append(f"{tenant} round {n} saw {as_dict(row)}, expected {mine}")
            if wrapper.connection is not None:
                problems.append(f"{tenant} round {n}: still holding {wrapper.lease_holders()}")
            # The next borrow, on any pooled connection: nothing of anyone.
            with wrapper.cursor() as cursor:
                after = probe(cursor)
            pids.add(after[3])
            if as_dict(after) != clean:
                problems.append(f"{tenant} round {n}: clean borrow saw {as_dict(after)}")
    except Exception as exc:
        problems.append(f"{tenant}: {exc!r}")
    finally:
        wrapper.close()


def pool_settles(alias: str, timeout: float = 5.0) -> bool:
    """Every connection rests in the pool. A connection the pool is still
    opening in the background counts in its size; wait for it to land."""
    deadline = monotonic() + timeout
    while True:
        size, idle = pgstat.pool_counts(alias)
        if idle == size:
            return True
        if monotonic() > deadline:
            return False
        threading.Event().wait(0.02)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("state", STATES)
def test_tenants_never_see_each_others_session_state(
    engine: str, state: str, scope: str, tenants: None
) -> None:
    # One connection for all six threads: every borrow follows another
    # thread's, often the other tenant's, on the same backend. (With more,
    # a thread tends to get back the connection it just released.)
    alias = SINGLE[engine]
    before = counters_by_alias().get(alias, Counter())
    session_user = connections[alias].settings_dict["USER"]
    start = threading.Barrier(THREADS_PER_TENANT * len(TENANTS))
    pids: dict[str, set[int]] = {t: set() for t in TENANTS}
    problems: list[str] = []
    threads = [
        threading.Thread(
            target=borrower,
            args=(alias, state, scope, t, session_user, start, pids[t], problems),
        )
        for t in TENANTS
        for _ in range(THREADS_PER_TENANT)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a borrower never finished"
    assert problems == [], problems[:5]
    shared = pids["a"] & pids["b"]
    # Reuse is the point: the same backend served both tenants.
    assert shared, f"no backend served both tenants: {pids}"
    # The test thread's own wrapper may hold the connection Django's test set-up
    # borrowed with a bare ensure_connection(); it is not a borrower here.
    connections[alias].close()
    assert pool_settles(alias), "connections not back in the pool"
    after = counters_by_alias()[alias]
    requests = THREADS_PER_TENANT * len(TENANTS) * ROUNDS
    resets = after["resets"] - before["resets"]
    pins = after["session_pins"] - before["session_pins"]
    if scope == "local":
        # Transaction-scoped state ends with the transaction: nothing to reset.
        assert (resets, pins) == (0, 0)
    else:
        # Every request's connection was wiped (DISCARD ALL) before reuse.
        assert resets >= requests
        assert (pins >= requests) if scope == "unscoped" else (pins == 0)
