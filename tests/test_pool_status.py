"""``manage.py pool_status``: this process's pools and the server's sessions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.test.utils import modify_settings

from django_pg_real_pool import _registry, telemetry
from tests.support.pgstat import sessions


@pytest.fixture(autouse=True)
def app_installed() -> Iterator[None]:
    # The command comes with the optional app.
    with modify_settings(INSTALLED_APPS={"append": "django_pg_real_pool"}):
        yield


def pool_status(*args: str) -> str:
    out = StringIO()
    call_command("pool_status", *args, stdout=out)
    return out.getvalue()


def rows_of(text: str, title: str) -> list[list[str]]:
    """The rows of the table under ``title`` (columns split on 2+ spaces)."""
    import re

    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows: list[list[str]] = []
    for line in lines[start + 4 :]:  # title, blank, header, rule
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_status_shows_held_connection_and_open_transaction(
    admin: psycopg.Connection[Any],
) -> None:
    cursor = connections["djpool"].cursor()
    try:
        cursor.execute("SELECT pg_backend_pid() /* held-by-test */")
        held_pid = cursor.fetchone()[0]
        with transaction.atomic(using="default"):
            with connections["default"].cursor() as inner:
                inner.execute("SELECT pg_backend_pid() /* in-transaction */")
                xact_pid = inner.fetchone()[0]
            text = pool_status()
            expected = telemetry.snapshot()
    finally:
        cursor.close()

    pools = {row[0]: row[1:] for row in rows_of(text, "Pools of this process")}
    header = next(line for line in text.splitlines() if line.startswith("metric"))
    aliases = header.split()[1:]
    ours = [a for a, e in connections.settings.items() if e["ENGINE"].startswith("django_pg_real")]
    assert aliases == ours and {"default", "djpool", "other"} <= set(aliases)
    used = dict(zip(aliases, pools["db.client.connection.count{state=used}"], strict=True))
    assert used["default"] == "1" and used["djpool"] == "1"
    acquires = dict(zip(aliases, pools["django_pg_real_pool.acquires"], strict=True))
    assert int(acquires["djpool"]) == expected["djpool"][telemetry.ENGINE_PREFIX + "acquires"]
    engines = dict(zip(aliases, pools["engine"], strict=True))
    assert engines["default"] == "native" and engines["djpool"] == "dj_db_conn_pool"

    default_rows = {int(r[0]): r for r in rows_of(text, "Server sessions of alias 'default'")}
    pid_row = default_rows[xact_pid]
    assert pid_row[1] == "pgrp-default"
    assert pid_row[2] == "idle in transaction"
    assert pid_row[3].endswith("s")  # transaction age
    assert "in-transaction" in pid_row[5]
    djpool_rows = {int(r[0]): r for r in rows_of(text, "Server sessions of alias 'djpool'")}
    assert djpool_rows[held_pid][2] == "idle"
    assert djpool_rows[held_pid][3] == "-"  # no transaction
    # The same sessions the server lists for each application.
    assert set(default_rows) == {s["pid"] for s in sessions(admin, "default")}
    assert set(djpool_rows) == {s["pid"] for s in sessions(admin, "djpool")}


def test_json_output_and_no_pool_created(admin: psycopg.Connection[Any]) -> None:
    connections["other"].close_pool()
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    data = json.loads(pool_status("--json", "--database", "default", "--database", "other"))
    assert set(data["pools"]) == set(data["server"]) == {"default", "other"}
    assert data["pools"]["other"][telemetry.CONNECTION_COUNT] == {"idle": 0, "used": 0}
    assert data["server"]["other"] == []
    assert pid in {row["pid"] for row in data["server"]["default"]}
    assert all(row["application_name"] == "pgrp-default" for row in data["server"]["default"])
    # The command read the server on its own connection: no pool for "other".
    assert _registry.get("other") is None
    assert sessions(admin, "other") == []
