"""Password authentication on a throwaway server (which trusts loopback otherwise)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tests.support.pgserver import PostgresServer


def require_password(server: PostgresServer, role: str, password: str) -> None:
    """Create ``role`` with ``password``; the server then checks it (SCRAM) for
    TCP connections of that role, ahead of the trust rules."""
    hba = server.datadir / "pg_hba.conf"
    # Rewriting the file in place keeps its owner (the service user when root).
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute("SELECT pg_reload_conf()")


def set_password(server: PostgresServer, role: str, password: str) -> None:
    """Rotate ``role``'s password; sessions already open are not affected."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
