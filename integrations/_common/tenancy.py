"""Tenant-per-message tasks under row-level security, written once (#18).

Each task-queue project's migration creates :data:`TABLE` with
:func:`create_tenant_rows`: :data:`ROWS_PER_TENANT` rows for each of
:data:`TENANTS`, a policy that shows a session only the rows of its
``app.tenant_id`` setting, and the non-superuser role :data:`READER_ROLE`
the tasks switch to (row-level security does not apply to superusers nor to
the table's owner). The project's task module wraps the functions below in
its queue's decorator with :func:`integrations._common.actors.define`.

The workers run with ``OPTIONS["real_pool"]["replay"]`` on (``P_REPLAY=1``):
a task's tenant state follows each of its borrows, whichever connection it
gets, and is gone when the task ends.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection, migrations

TABLE = "pgrp_tenant_row"
TENANTS = ["1", "2", "3"]
ROWS_PER_TENANT = 5
READER_ROLE = "pgrp_tenant_reader"


def create_tenant_rows() -> migrations.RunSQL:
    """The operation creating :data:`TABLE`, its rows, policy and reader role."""
    return migrations.RunSQL(
        [
            # Roles are the cluster's: another project's database may have made it.
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
                    CREATE ROLE {READER_ROLE} NOLOGIN;
                END IF;
            END $$""",
            # SET ROLE needs membership unless the worker logs in as a superuser.
            f"GRANT {READER_ROLE} TO CURRENT_USER",
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, tenant_id text NOT NULL, "
            "label text NOT NULL)",
            f"INSERT INTO {TABLE} (tenant_id, label) "
            f"SELECT t, 'tenant-' || t || '-' || n FROM unnest(ARRAY{TENANTS!r}) t, "
            f"generate_series(1, {ROWS_PER_TENANT}) n",
            f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY",
            f"CREATE POLICY tenant_only ON {TABLE} "
            "USING (tenant_id = current_setting('app.tenant_id', true))",
            f"GRANT SELECT ON {TABLE} TO {READER_ROLE}",
        ],
        reverse_sql=[f"DROP TABLE {TABLE}"],
    )


def _read() -> dict[str, Any]:
    """The rows the policy shows, then who the server thinks is asking: two
    queries, each on a borrow of its own (released in between)."""
    released = []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tenant_id, label FROM {TABLE} ORDER BY id")
        rows = [list(row) for row in cursor.fetchall()]
    released.append(connection.connection is None)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, current_setting('app.tenant_id', true), pg_backend_pid()"
        )
        user, tenant_id, pid = cursor.fetchone()
    released.append(connection.connection is None)
    return {
        "rows": rows,
        "user": user,
        "tenant_id": tenant_id,
        "pid": pid,
        "released": released,
        "thread": threading.get_ident(),
    }


def tenant_rows(tenant: str, mode: str) -> dict[str, Any]:
    """Read ``tenant``'s rows as :data:`READER_ROLE`; ``mode`` ``context``:
    inside ``session_context(role=..., settings={"app.tenant_id": ...})``;
    ``set``: with a plain ``SET ROLE`` and ``set_config(..., false)``, which the
    replay option turns into the task's context."""
    from django_pg_real_pool import session_context

    if mode == "context":
        with session_context(role=READER_ROLE, settings={"app.tenant_id": tenant}):
            return _read()
    with connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {READER_ROLE}")
        cursor.execute("SELECT set_config('app.tenant_id', %s, false)", [tenant])
    return _read()


def leak_tenant_context(tenant: str) -> dict[str, Any]:
    """Enters a tenant's ``session_context()`` and never leaves it: the task
    bracket must clear and report it."""
    from django_pg_real_pool import session_context

    context = session_context(role=READER_ROLE, settings={"app.tenant_id": tenant})
    context.__enter__()
    return _read()


def tenant_probe() -> dict[str, Any]:
    """What a task with no context sees: its login role, no tenant, the
    default ``search_path``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user = session_user, current_setting('app.tenant_id', true), "
            "current_setting('search_path'), pg_backend_pid()"
        )
        login_role, tenant_id, search_path, pid = cursor.fetchone()
    return {
        "login_role": login_role,
        "tenant_id": tenant_id,
        "search_path": search_path,
        "pid": pid,
        "released": connection.connection is None,
        "thread": threading.get_ident(),
    }


TASKS = (tenant_rows, leak_tenant_context, tenant_probe)
