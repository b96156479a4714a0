"""What the server says: backend pids, pg_stat_activity, pool counts."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections


def admin_dsn(alias: str = "default") -> str:
    """DSN of the database ``alias`` currently points to (the test database in tests)."""
    sd = connections[alias].settings_dict
    return psycopg.conninfo.make_conninfo(
        host=sd["HOST"],
        port=sd["PORT"],
        user=sd["USER"],
        dbname=sd["NAME"],
        password=sd["PASSWORD"] or None,
    )


def backend_pid(alias: str) -> int:
    """``pg_backend_pid()`` through Django's connection (borrows if needed)."""
    return wrapper_backend_pid(connections[alias])


def wrapper_backend_pid(wrapper: Any) -> int:
    """``pg_backend_pid()`` through ``wrapper`` (borrows if needed)."""
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def sessions(admin: psycopg.Connection[Any], alias: str | None = None) -> list[dict[str, Any]]:
    """Client sessions on the admin connection's database (of ``alias``'s pool
    when given: the test settings name each alias's application)."""
    rows = admin.execute(
        "SELECT pid, state, backend_xid IS NOT NULL, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_type = 'client backend' "
        "AND pid <> pg_backend_pid() AND (%s::text IS NULL OR application_name = %s)",
        [alias and f"pgrp-{alias}", alias and f"pgrp-{alias}"],
    ).fetchall()
    return [{"pid": r[0], "state": r[1], "has_xid": r[2], "query": r[3]} for r in rows]


def idle_in_transaction(admin: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [
        s for s in sessions(admin) if s["state"] and s["state"].startswith("idle in transaction")
    ]


def pool_counts(alias: str) -> tuple[int, int]:
    """(connections the pool has, connections resting in it) for ``alias``."""
    wrapper: Any = connections[alias]
    supply = wrapper._lease_supply
    if supply is None or wrapper._lease_settings is None:  # never borrowed, or pool replaced
        wrapper.ensure_connection()
        wrapper.close()
        supply = wrapper._lease_supply
    stats = supply.stats()
    if "pool_checked_out" in stats:  # SQLAlchemy QueuePool
        return stats["pool_checked_out"] + stats["pool_available"], stats["pool_available"]
    return stats["pool_size"], stats["pool_available"]


def backend_gone(admin: psycopg.Connection[Any], pid: int) -> bool:
    """The server has no session with ``pid`` any more."""
    return admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is None


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true; for state with no event to wait on
    (a pool worker thread replacing a discarded connection)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def statement_counts(admin: psycopg.Connection[Any]) -> dict[str, int]:
    """``pg_stat_statements``' calls per normalized statement on the admin
    connection's database (the throwaway server preloads the module; the
    caller creates the extension)."""
    rows = admin.execute(
        "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = current_database() AND query NOT ILIKE %s",
        ["%pg_stat_statements%"],
    ).fetchall()
    return {query: int(calls) for query, calls in rows}
