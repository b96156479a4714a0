"""The engine behind a real transaction-mode PgBouncer (started here, on loopback).

PgBouncer gets 2 server connections for 4 pooled client connections per
engine, so consecutive transactions of one client do run on different server
sessions. What works is run through it; what cannot work behind such a pooler
fails at the first statement with an error naming the setting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from django_pg_real_pool import SessionStateError
from django_pg_real_pool.checks import check_alias
from tests.settings import database
from tests.support import pgstat
from tests.support.concurrent import on_threads
from tests.support.pgbouncer import PgBouncer, find_pgbouncer
from tests.support.wrappers import add_alias, remove_aliases
from tests.testapp.models import Item

SERVER_CONNECTIONS = 2
BACKENDS = {"native": "django_pg_real_pool", "dj": "django_pg_real_pool.dj_db_conn_pool"}
#: Settings that work behind a transaction-mode pooler (README "Running a fleet").
SAFE: dict[str, Any] = {
    "DISABLE_SERVER_SIDE_CURSORS": True,
    "OPTIONS": {"real_pool": {"session_state": "error"}},
}
#: One setting each that needs a server session per client, the words the
#: error must contain, and the system check that warns about it (None: no
#: check can see it without connecting).
SESSION_BOUND: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "prepared": (
        {**SAFE, "OPTIONS": {**SAFE["OPTIONS"], "prepare_threshold": 0}},
        "['OPTIONS']['prepare_threshold'] is 0",
        "W005",
    ),
    "cursors": (
        {"OPTIONS": SAFE["OPTIONS"]},
        "['DISABLE_SERVER_SIDE_CURSORS'] is not True",
        None,
    ),
    "pinned": (
        {"DISABLE_SERVER_SIDE_CURSORS": True, "OPTIONS": {}},
        "['session_state'] is 'pin'",
        "W004",
    ),
}
APP = "pgrp-bouncer"


def _entry(backend: str, dsn: str, alias: str, extra: dict[str, Any]) -> dict[str, Any]:
    # A mirror: Django's flush after each test goes to "default" (the same
    # database), not through aliases that refuse every statement.
    entry = database(backend, dsn, alias, TEST={"MIRROR": "default"})
    entry["OPTIONS"].update(extra.get("OPTIONS", {}))
    entry["OPTIONS"]["application_name"] = APP
    entry.update({k: v for k, v in extra.items() if k != "OPTIONS"})
    return entry


@pytest.fixture(scope="module")
def bouncer(django_db_setup: None, django_db_blocker: Any) -> Iterator[PgBouncer]:
    binary, why = find_pgbouncer(install=True)
    if binary is None:
        pytest.fail(why)  # CI installs it (root + apt-get): never a silent skip.
    server = connections["default"].settings_dict
    dsn = (
        f"host={server['HOST']} port={server['PORT']} user={server['USER']} dbname={server['NAME']}"
    )
    with PgBouncer(binary, dsn, pool_size=SERVER_CONNECTIONS, wait_timeout=5) as running:
        yield running


@pytest.fixture(scope="module")
def aliases(bouncer: PgBouncer) -> Iterator[dict[str, str]]:
    """``{"<engine>" or "<engine>-<case>": alias}``, registered like the
    aliases of settings.DATABASES (see test_faults.py's fixture)."""
    found: dict[str, str] = {}
    variants: dict[str, dict[str, Any]] = {"": SAFE}
    variants.update({case: spec[0] for case, spec in SESSION_BOUND.items()})
    # A session-mode pooler: no check (here, pin and server-side cursors on).
    variants["off"] = {"OPTIONS": {"real_pool": {"pooler": "off"}}}
    for engine, backend in BACKENDS.items():
        for case, extra in variants.items():
            alias = f"bouncer_{engine}_{case}".rstrip("_")
            entry = _entry(backend, bouncer.dsn(), alias, extra)
            add_alias(alias, entry)
            found[f"{engine}-{case}".rstrip("-")] = alias
    try:
        yield found
    finally:
        remove_aliases(found.values())


@pytest.fixture(params=list(BACKENDS))
def alias(request: pytest.FixtureRequest, aliases: dict[str, str]) -> Iterator[str]:
    name = aliases[request.param]
    connections[name].close()
    yield name
    connections[name].close()


def _server_sessions(admin: psycopg.Connection[Any]) -> int:
    """PgBouncer's server sessions: they carry the clients' application_name."""
    return len(pgstat.sessions(admin, "bouncer"))


def test_queries_release_through_pgbouncer(alias: str, admin: psycopg.Connection[Any]) -> None:
    Item.objects.using(alias).bulk_create([Item(name=f"r{i}", value=i) for i in range(20)])

    def work(_: threading.Barrier) -> None:
        for n in range(25):
            assert Item.objects.using(alias).filter(value=n % 20).count() == 1
            assert connections[alias].connection is None

    on_threads(8, work)
    # 8 threads, 4 pooled client connections, PgBouncer's 2 server sessions.
    assert 1 <= _server_sessions(admin) <= SERVER_CONNECTIONS


def test_atomic_keeps_one_server_session_through_pgbouncer(alias: str) -> None:
    stop = threading.Event()

    def noise(_: threading.Barrier) -> None:
        # Other clients' transactions interleave on PgBouncer's 2 sessions.
        while not stop.is_set():
            Item.objects.using(alias).filter(value=-1).exists()

    runner = threading.Thread(target=on_threads, args=(3, noise))
    runner.start()
    try:
        for _ in range(5):
            with transaction.atomic(using=alias):
                pids = set()
                for _ in range(10):
                    with connections[alias].cursor() as cursor:
                        cursor.execute("SELECT pg_backend_pid()")
                        pids.add(cursor.fetchone()[0])
                Item.objects.using(alias).create(name="rolled back", value=1000)
                transaction.set_rollback(True, using=alias)
            assert len(pids) == 1
        with transaction.atomic(using=alias):
            Item.objects.using(alias).create(name="committed", value=1001)
    finally:
        stop.set()
        runner.join(60)
    assert not Item.objects.using(alias).filter(value=1000).exists()
    assert Item.objects.using(alias).filter(value=1001).count() == 1


def test_iterator_reads_every_row_through_pgbouncer(alias: str) -> None:
    Item.objects.using(alias).bulk_create([Item(name=f"i{i}", value=i) for i in range(300)])

    def work(_: threading.Barrier) -> list[int]:
        values = []
        for item in Item.objects.using(alias).order_by("value").iterator(chunk_size=25):
            values.append(item.value)
            Item.objects.using(alias).filter(value=item.value).exists()
        return values

    seen = on_threads(4, work)
    assert all(values == list(range(300)) for values in seen)


def test_session_state_fails_before_reaching_pgbouncer(alias: str) -> None:
    with connections[alias].cursor() as cursor, pytest.raises(SessionStateError, match="SET"):
        cursor.execute("SET search_path TO pg_catalog")
    # The transaction-scoped form works, and ends with its transaction.
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '1234ms'")
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("1234ms",)
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)


def test_server_side_binding_works_through_pgbouncer(aliases: dict[str, str]) -> None:
    # Unnamed statements with bound parameters live within one Sync: fine.
    alias = aliases["native"]
    wrapper = connections[alias]
    wrapper.settings_dict["OPTIONS"]["server_side_binding"] = True
    wrapper.close_pool()
    try:
        Item.objects.using(alias).create(value=7)

        def work(_: threading.Barrier) -> None:
            for _ in range(20):
                assert Item.objects.using(alias).filter(value=7).count() == 1

        on_threads(4, work)
    finally:
        del wrapper.settings_dict["OPTIONS"]["server_side_binding"]
        wrapper.close()
        wrapper.close_pool()


@pytest.mark.parametrize("engine", list(BACKENDS))
@pytest.mark.parametrize("case", list(SESSION_BOUND))
def test_session_bound_setting_fails_at_first_statement(
    aliases: dict[str, str], engine: str, case: str
) -> None:
    alias = aliases[f"{engine}-{case}"]
    _settings, words, _check = SESSION_BOUND[case]
    try:
        for _ in range(2):  # and again: the refusal is remembered, not lost
            with pytest.raises(ImproperlyConfigured, match="transaction-mode pooler") as raised:
                Item.objects.using(alias).count()
            assert words in str(raised.value)
            assert "'pooler'] = 'off'" in str(raised.value)
            assert connections[alias].connection is None
    finally:
        connections[alias].close()


@pytest.mark.parametrize("engine", list(BACKENDS))
def test_pooler_off_skips_the_check(aliases: dict[str, str], engine: str) -> None:
    # The settings "pinned" and "cursors" are refused with, not asked about:
    # "off" is for a session-mode pooler, where they work.
    alias = aliases[f"{engine}-off"]
    try:
        assert Item.objects.using(alias).filter(value=-5).count() == 0
    finally:
        connections[alias].close()


def test_system_checks_agree_with_the_real_pgbouncer(aliases: dict[str, str]) -> None:
    """The pooler warnings fire for exactly the settings PgBouncer refuses
    here; the settings the README recommends pass both."""
    pooler_ids = {
        "django_pg_real_pool.W003",
        "django_pg_real_pool.W004",
        "django_pg_real_pool.W005",
    }

    def pooler_warnings(alias: str) -> set[str]:
        found = check_alias(alias, connections.settings[alias])
        return {m.id for m in found if m.id in pooler_ids}

    assert pooler_warnings(aliases["native"]) == set()
    assert Item.objects.using(aliases["native"]).count() >= 0
    for case, (_settings, _words, check) in SESSION_BOUND.items():
        expected = {f"django_pg_real_pool.{check}"} if check else set()
        # "cursors": W003 guesses PgBouncer from PORT 6432 only; this one
        # listens elsewhere, and only the engine's own question sees it.
        assert pooler_warnings(aliases[f"native-{case}"]) == expected, case
