"""Django's per-connection set-up runs once per physical connection, not per borrow."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections
from django.db.backends.signals import connection_created

from tests.testapp.models import Item


def _ensure_extension(admin: psycopg.Connection[Any]) -> None:
    # The server must preload pg_stat_statements (the throwaway one does).
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def statements(admin: psycopg.Connection[Any]) -> dict[str, int]:
    rows = admin.execute(
        "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND query NOT ILIKE %s",
        ["%pg_stat_statements%"],
    ).fetchall()
    return dict(rows)


def test_reborrow_sends_no_extra_statements(engine: str, admin: psycopg.Connection[Any]) -> None:
    # Warm up: physical connections get configured (time zone) now.
    for _ in range(5):
        Item.objects.using(engine).filter(value=1).exists()
    _ensure_extension(admin)
    admin.execute("SELECT pg_stat_statements_reset()")
    created: list[Any] = []
    connection_created.connect(lambda **kw: created.append(kw), weak=False, dispatch_uid="count")
    try:
        for _ in range(100):
            Item.objects.using(engine).filter(value=1).exists()
            assert connections[engine].connection is None
    finally:
        connection_created.disconnect(dispatch_uid="count")
    counts = statements(admin)
    ours = {q: c for q, c in counts.items() if "testapp_item" in q}
    assert sum(ours.values()) == 100, counts
    # Nothing else: no SET TIME ZONE, no SET ROLE, no BEGIN, no SELECT 1 pings.
    others = {q: c for q, c in counts.items() if "testapp_item" not in q}
    assert others == {}, others
    assert created == []


def test_configuration_happens_per_physical_connection(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    wrapper = connections[engine]
    with wrapper.cursor() as cursor:
        cursor.execute("SHOW TIME ZONE")
        assert cursor.fetchone() == (wrapper.timezone_name,)
    announced: list[int] = []

    def on_created(connection: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            announced.append(cursor.fetchone()[0])

    connection_created.connect(on_created, weak=False, dispatch_uid="announce")
    try:
        # A fresh physical connection (the old ones are terminated) is
        # announced exactly once, however often it is borrowed.
        admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s",
            [f"pgrp-{engine}"],
        )
        pids = [Item.objects.using(engine).count() or _pid(engine) for _ in range(20)]
    finally:
        connection_created.disconnect(dispatch_uid="announce")
    assert announced, "connection_created never sent for a new physical connection"
    assert len(announced) == len(set(announced))
    assert set(pids) <= set(announced)


def _pid(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])
