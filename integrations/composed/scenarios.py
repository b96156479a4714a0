"""Scenarios run in a fresh process on a composed engine; each prints a JSON report.

``python -m integrations.composed.scenarios <name>`` with the environment of
``settings.py``. The tests (``tests/``) start it on a scratch database and
assert on the report, which carries what the server said (backend pids,
``pg_stat_activity``) next to what Django returned.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from tests.support.concurrent import on_threads

THREADS = 32
APP_NAME = os.environ.get("COMPOSED_APP_NAME", "pgrp-composed")
WRITES_PER_THREAD = 10
SEED_NOTES = 3


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(os.environ["DJANGO_PG_REAL_POOL_TEST_DSN"], autocommit=True)


def server_sessions() -> dict[str, int]:
    """The pool's sessions on the server: how many, and how many idle in a transaction."""
    from django.conf import settings

    with _admin() as admin:
        row = admin.execute(
            "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%%') "
            "FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [settings.DATABASES["default"]["OPTIONS"]["application_name"]],
        ).fetchone()
    assert row is not None
    return {"sessions": int(row[0]), "idle_in_transaction": int(row[1])}


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def held_pids(work: Callable[[], Any] = lambda: None) -> list[tuple[int, Any]]:
    """``work()`` on as many threads as the pool has connections, each holding
    one (a transaction) until all have theirs: every physical connection runs it."""
    from django.db import transaction

    from integrations.composed.settings import POOL_SIZE

    def run(barrier: threading.Barrier) -> tuple[int, Any]:
        with transaction.atomic():
            pid = backend_pid()
            result = work()
            barrier.wait()
        return pid, result

    return on_threads(POOL_SIZE, run)


def postgis() -> dict[str, Any]:
    from django.contrib.gis.db.models.functions import Distance
    from django.contrib.gis.geos import Point, Polygon
    from django.core.management import call_command
    from django.db import connection

    from integrations.composed.geo_app.models import City, Zone

    # Every pooled connection set up before PostGIS exists in the database,
    # as in a test run: migrate creates the extension afterwards.
    before = {pid for pid, _ in held_pids()}
    call_command("migrate", verbosity=0)
    square = Polygon(((0, 0), (0, 10), (10, 10), (10, 0), (0, 0)), srid=4326)
    Zone.objects.create(name="square", area=square)
    City.objects.create(name="inside", point=Point(5, 5, srid=4326))
    City.objects.create(name="outside", point=Point(20, 20, srid=4326))
    report: dict[str, Any] = {"pids_before_migrate": sorted(before)}
    report["within"] = sorted(
        City.objects.filter(point__within=square).values_list("name", flat=True)
    )
    report["contains"] = list(
        Zone.objects.filter(area__contains=Point(1, 1, srid=4326)).values_list("name", flat=True)
    )
    report["dwithin"] = sorted(
        City.objects.filter(point__dwithin=(Point(4, 4, srid=4326), 2)).values_list(
            "name", flat=True
        )
    )
    nearest = City.objects.annotate(d=Distance("point", Point(0, 0, srid=4326))).order_by("d")
    report["nearest"] = [c.name for c in nearest]
    report["roundtrip"] = list(City.objects.get(name="inside").point.coords)
    report["area_roundtrip"] = Zone.objects.get().area.equals(square)
    # Geometries as parameters and results on every physical connection.
    report["per_connection"] = [
        [pid, count]
        for pid, count in held_pids(
            lambda: (
                City.objects.filter(point__within=square).count()
                + Zone.objects.filter(area__intersects=Point(5, 5, srid=4326)).count()
            )
        )
    ]
    # Physical connections opened after the extension existed: the pool
    # replaces the ones the server ends.
    with _admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [APP_NAME],
        )
    report["replaced"] = [
        [pid, count]
        for pid, count in held_pids(lambda: City.objects.filter(point__within=square).count())
    ]
    with _admin() as admin:
        report["gist_indexes"] = sorted(
            row[0]
            for row in admin.execute(
                "SELECT tablename || '.' || indexdef FROM pg_indexes "
                "WHERE tablename LIKE 'geo_app_%%' AND indexdef ILIKE '%%USING gist%%'"
            )
        )
        report["postgis_version"] = admin.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'postgis'"
        ).fetchone()
    report.update(_threads_on_small_pool(lambda i, j: City(name=f"t{i}-{j}", point=Point(i, j))))
    report["written"] = City.objects.filter(name__startswith="t").count()
    report["main_thread_released"] = connection.connection is None
    report.update(server_sessions())
    return report


def _threads_on_small_pool(make: Callable[[int, int], Any]) -> dict[str, Any]:
    """``THREADS`` threads each saving ``WRITES_PER_THREAD`` objects and reading
    one back through a spatial/ORM query; their backend pids."""
    counter = iter(range(THREADS))
    lock = threading.Lock()
    pids: set[int] = set()
    released: list[bool] = []

    def run(barrier: threading.Barrier) -> None:
        from django.db import connection

        with lock:
            index = next(counter)
        barrier.wait()
        for j in range(WRITES_PER_THREAD):
            obj = make(index, j)
            obj.save()
            assert type(obj).objects.filter(pk=obj.pk).exists()
            pid = backend_pid()
            with lock:
                pids.add(pid)
        with lock:
            released.append(connection.connection is None)

    on_threads(THREADS, run)
    return {"thread_pids": sorted(pids), "threads_released": released.count(True)}


def tenants() -> dict[str, Any]:
    import logging

    from django.core.management import call_command
    from django.db import connection

    from integrations.composed.notes_app.models import Note
    from integrations.composed.tenant_app.models import Client

    warnings = _count_warnings(logging.getLogger("django_pg_real_pool"))
    call_command("migrate_schemas", shared=True, verbosity=0, interactive=False)
    # Saving a tenant creates its schema and runs the tenant apps' migrations.
    for schema in ("tenant_a", "tenant_b"):
        Client.objects.create(schema_name=schema, name=schema)
    report: dict[str, Any] = {}
    with _admin() as admin:
        report["note_tables"] = [
            row[0]
            for row in admin.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'notes_app_note' ORDER BY 1"
            )
        ]
    # set_tenant() then queries, each on a borrow of its own.
    main_pids = set()
    released = []
    for schema, count in (("tenant_a", 5), ("tenant_b", 3)):
        connection.set_tenant(Client.objects.get(schema_name=schema))
        for i in range(count):
            Note.objects.create(text=f"{schema}-main-{i}")
            released.append(connection.connection is None)
            main_pids.add(backend_pid())
        connection.set_schema_to_public()
    report["main_released"] = all(released)
    report["main_pids"] = len(main_pids)

    # Threads on three schemas, each query on whichever connection it gets:
    # the path it runs with must always be its own.
    schemas = ["tenant_a", "tenant_b", "public"]
    counter = iter(range(THREADS))
    lock = threading.Lock()
    wrong: list[tuple[str, str]] = []
    pids: set[int] = set()
    per_schema = dict.fromkeys(schemas, 0)

    def run(barrier: threading.Barrier) -> None:
        from django.db import connection

        with lock:
            schema = schemas[next(counter) % len(schemas)]
        if schema == "public":
            connection.set_schema_to_public()
        else:
            connection.set_tenant(Client.objects.get(schema_name=schema))
        expected = "public" if schema == "public" else f"{schema}, public"
        barrier.wait()
        for j in range(WRITES_PER_THREAD):
            if schema != "public":
                Note.objects.create(text=f"{schema}-{j}")
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('search_path'), pg_backend_pid()")
                path, pid = cursor.fetchone()
            with lock:
                pids.add(pid)
                if path != expected:
                    wrong.append((expected, path))
                per_schema[schema] += schema != "public"

    on_threads(THREADS, run)
    report["wrong_search_paths"] = wrong
    report["thread_pids"] = len(pids)
    counts = {}
    for schema in ("tenant_a", "tenant_b"):
        connection.set_tenant(Client.objects.get(schema_name=schema))
        counts[schema] = [Note.objects.count(), per_schema[schema]]
    connection.set_schema_to_public()
    report["counts"] = counts
    report["holders"] = connection.lease_holders()
    report["engine_warnings"] = warnings
    report.update(server_sessions())
    return report


def tenants_web_setup() -> dict[str, Any]:
    """Shared migrations, then the tenants of ``COMPOSED_TENANTS`` (schema
    names), each with its domain ``<schema>.localhost`` and ``SEED_NOTES``
    notes ``<schema>-seed-<i>``: what the tenant web project serves."""
    from django.core.management import call_command
    from django.db import connection

    from integrations.composed.notes_app.models import Note
    from integrations.composed.tenant_app.models import Client, Domain

    call_command("migrate_schemas", shared=True, verbosity=0, interactive=False)
    schemas = os.environ["COMPOSED_TENANTS"].split(",")
    for schema in schemas:
        # Saving a tenant creates its schema and migrates it.
        client = Client.objects.create(schema_name=schema, name=schema)
        Domain.objects.create(domain=f"{schema}.localhost", tenant=client, is_primary=True)
        connection.set_tenant(client)
        Note.objects.bulk_create(Note(text=f"{schema}-seed-{i}") for i in range(SEED_NOTES))
        connection.set_schema_to_public()
    return {"tenants": schemas}


def _count_warnings(logger: Any) -> list[str]:
    """Messages of the warnings ``logger`` emits from now on (the engine warns
    when a statement pins a connection)."""
    import logging

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Collect(logging.WARNING))
    return seen


def prometheus() -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection
    from prometheus_client import REGISTRY

    from integrations.composed.notes_app.models import Note

    labels = {"alias": "default", "vendor": "postgresql"}

    def metric(name: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    call_command("migrate", verbosity=0)
    executed = metric("django_db_execute_total")
    released = []
    pids = set()
    for i in range(20):
        Note.objects.create(text=f"note-{i}")
        released.append(connection.connection is None)
        pids.add(backend_pid())
        released.append(connection.connection is None)
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO notes_app_note (text) VALUES (%s)", [["m1"], ["m2"]])
    report: dict[str, Any] = {
        # 20 inserts, 20 pid queries, one executemany of 2.
        "executed": metric("django_db_execute_total") - executed,
        "executed_many": metric("django_db_execute_many_total"),
        "released": all(released),
        "main_pids": len(pids),
        "rows": Note.objects.count(),
    }
    report.update(_threads_on_small_pool(lambda i, j: Note(text=f"t{i}-{j}")))
    report["rows_after_threads"] = Note.objects.count()
    report["new_connections"] = metric("django_db_new_connections_total")
    with _admin() as admin:
        row = admin.execute(
            "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            [connection.settings_dict["OPTIONS"]["application_name"]],
        ).fetchone()
        report["server_backends"] = row[0] if row else None
    report.update(server_sessions())
    return report


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "postgis": postgis,
    "tenants": tenants,
    "prometheus": prometheus,
    "tenants_web_setup": tenants_web_setup,
}


def main(name: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations.composed.settings")
    django.setup()
    report = SCENARIOS[name]()
    print("REPORT " + json.dumps(report, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
