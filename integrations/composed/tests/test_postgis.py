"""GeoDjango on ``django_pg_real_pool.postgis`` (both pools) against a real PostGIS.

The embedded server wheel has no PostGIS: this module uses Debian's
``postgresql-15-postgis-3`` (installed by ``make postgis-deps``) and skips,
saying what is missing, where it is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integrations.composed.harness import (
    postgis_missing,
    postgis_server,
    run_scenario,
    scratch_database,
)
from integrations.composed.scenarios import THREADS, WRITES_PER_THREAD
from integrations.composed.settings import POOL_SIZE
from tests.support.pgserver import PostgresServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(postgis_missing() is not None, reason=postgis_missing() or ""),
]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgis_server() as server:
        yield server


@pytest.fixture(scope="module", params=["native", "dj"])
def report(request: pytest.FixtureRequest, server: PostgresServer) -> dict[str, Any]:
    pool: str = request.param
    dsn = scratch_database(server.dsn(), f"geo_{pool}")
    return run_scenario("postgis", dsn, backend="postgis", pool=pool)


def test_migrations_create_postgis_and_spatial_indexes(report: dict[str, Any]) -> None:
    assert report["postgis_version"]
    assert [index.split(".")[0] for index in report["gist_indexes"]] == [
        "geo_app_city",  # CreateModel with a PointField
        "geo_app_zone",  # AddField of a PolygonField in a later migration
    ]


def test_spatial_lookups_and_functions(report: dict[str, Any]) -> None:
    assert report["within"] == ["inside"]
    assert report["contains"] == ["square"]
    assert report["dwithin"] == ["inside"]
    assert report["nearest"] == ["inside", "outside"]
    assert report["roundtrip"] == [5.0, 5.0]
    assert report["area_roundtrip"] is True


def test_connections_set_up_before_postgis_adapt_geometries(report: dict[str, Any]) -> None:
    # Every physical connection, including those set up before migrate
    # created the extension, sends and reads geometries.
    assert len(report["pids_before_migrate"]) == POOL_SIZE
    assert sorted(pid for pid, _ in report["per_connection"]) == report["pids_before_migrate"]
    assert {count for _, count in report["per_connection"]} == {2}


def test_connections_opened_after_postgis_adapt_geometries(report: dict[str, Any]) -> None:
    # The server ended every pooled session; the pool's new connections,
    # set up after the extension existed, send and read geometries too.
    pids = [pid for pid, _ in report["replaced"]]
    assert len(set(pids)) == POOL_SIZE
    assert not set(pids) & set(report["pids_before_migrate"])
    assert {count for _, count in report["replaced"]} == {1}


def test_32_threads_on_a_pool_of_4_lose_nothing_and_leak_nothing(report: dict[str, Any]) -> None:
    assert report["written"] == THREADS * WRITES_PER_THREAD
    assert report["threads_released"] == THREADS
    # What the server says: the pool's 4 backends served every thread, none
    # was left in a transaction, no extra session was opened.
    assert report["thread_pids"] == sorted(pid for pid, _ in report["replaced"])
    assert report["sessions"] == POOL_SIZE
    assert report["idle_in_transaction"] == 0
    assert report["main_thread_released"] is True
