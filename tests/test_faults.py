"""Fault injection under load: 32 threads on a pool of 4, loopback only.

Each scenario runs a web-like load (one "request" = request_started, a few
ORM operations, request_finished, as Django's handler does) while a fault
hits: backends killed with ``pg_terminate_backend``, a server restart,
statement and lock timeouts, pool exhaustion, a stalled then cut network
link. Afterwards it asserts, against the server:

* every failure reached its caller as a ``django.db.Error`` (no internal
  error, no request that "succeeded" with a wrong answer);
* no committed write is lost, no rolled-back write is visible (the
  ``Ledger`` table); a write whose COMMIT itself failed is "in doubt" and
  may go either way, as with any database client;
* no session is left idle in transaction and the pool stays within its size;
* the load recovers within a bound after the fault ends.

The destructive scenarios use a throwaway PostgreSQL server of their own
(the session's server is never restarted), reached through a database alias
registered at run time in ``django.db.connections.settings``: every thread's
``connections[alias]`` then builds a real engine wrapper for it, exactly as
for an alias from ``settings.DATABASES``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import random
import threading
from collections.abc import Callable, Iterator
from time import monotonic
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import Error as DjangoDBError
from django.db import connections, transaction

from django_pg_real_pool import PoolExhausted
from django_pg_real_pool._counters import counters_by_alias
from tests.settings import database
from tests.support.pgserver import PostgresServer
from tests.support.pgstat import pool_counts
from tests.support.tcpproxy import TcpProxy
from tests.support.wrappers import add_alias, remove_aliases
from tests.testapp.models import Ledger

THREADS = 32
POOL_SIZE = 4
ENGINES = {
    "native": "django_pg_real_pool",
    "dj_db_conn_pool": "django_pg_real_pool.dj_db_conn_pool",
}
# One alias per scenario and engine: pool timeout and connection options.
SCENARIOS: dict[str, dict[str, Any]] = {
    "kill": {"timeout": 3.0},
    "restart": {"timeout": 2.0},
    "timeouts": {
        "timeout": 3.0,
        "options": {"options": "-c statement_timeout=500 -c lock_timeout=50"},
    },
    "storm": {"timeout": 0.5},
    "stall": {"timeout": 1.0, "proxied": True, "options": {"connect_timeout": 2}},
}
SEED = "seed"
HOT = "hot"
_runs = itertools.count()


# -- infrastructure --------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server the scenarios may kill, restart and cut off."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(pg: PostgresServer) -> Iterator[TcpProxy]:
    """The loopback link of the "stall" aliases, to stall and cut."""
    with TcpProxy("127.0.0.1", pg.port) as link:
        yield link


@pytest.fixture(scope="module")
def aliases(
    django_db_setup: None, django_db_blocker: Any, pg: PostgresServer, proxy: TcpProxy
) -> Iterator[dict[tuple[str, str], str]]:
    """Database aliases on the faults server, one per scenario and engine.

    Registered in ``connections.settings`` before the tests' database set-up
    (module scope, after the session's test databases exist): each test's
    ``databases = "__all__"`` then includes them, so Django's test isolation
    lets the load threads connect, and flushes them after each test. Every
    thread's ``connections[alias]`` builds a real engine wrapper, exactly as
    for an alias of ``settings.DATABASES``.
    """
    found: dict[tuple[str, str], str] = {}
    for scenario, spec in SCENARIOS.items():
        for engine, backend in ENGINES.items():
            alias = f"faults_{scenario}_{engine}"
            entry = database(backend, pg.dsn(), alias)
            if spec.get("proxied"):
                entry["PORT"] = str(proxy.port)
            entry["OPTIONS"].update(spec.get("options", {}))
            timeout = spec["timeout"]
            if engine == "native":
                entry["OPTIONS"]["pool"] = {
                    "min_size": 1,
                    "max_size": POOL_SIZE,
                    "timeout": timeout,
                }
            else:
                entry["POOL_OPTIONS"] = {
                    "POOL_SIZE": POOL_SIZE,
                    "MAX_OVERFLOW": 0,
                    "TIMEOUT": timeout,
                }
            add_alias(alias, entry)
            found[(scenario, engine)] = alias
    try:
        with django_db_blocker.unblock():
            # One database for all of them: the test app's tables, once.
            call_command("migrate", "testapp", database=found[("kill", "native")], verbosity=0)
        yield found
    finally:
        remove_aliases(found.values())


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def admin(pg: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        yield conn


@contextlib.contextmanager
def fault_alias(aliases: dict[tuple[str, str], str], scenario: str, engine: str) -> Iterator[str]:
    """The scenario's alias with a fresh ledger; its pool emptied afterwards."""
    alias = aliases[(scenario, engine)]
    ledger = Ledger.objects.using(alias)
    ledger.all().delete()
    ledger.bulk_create([Ledger(key=SEED), Ledger(key=HOT)])
    try:
        yield alias
    finally:
        wrapper: Any = connections[alias]
        wrapper.close()
        # The next test starts from an empty pool (and zero counters).
        wrapper.close_pool()


# -- the load --------------------------------------------------------------------


class _Abort(Exception):
    """Raised on purpose inside atomic(): the write must be rolled back."""


@dataclasses.dataclass
class Tally:
    """What the callers saw (one per thread, merged at the end)."""

    ok: int = 0
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    silent: list[str] = dataclasses.field(default_factory=list)
    leaks: list[str] = dataclasses.field(default_factory=list)
    committed: set[str] = dataclasses.field(default_factory=set)
    rolled_back: set[str] = dataclasses.field(default_factory=set)
    in_doubt: set[str] = dataclasses.field(default_factory=set)
    # (start, end, ok, kind, exception class name) of every request
    events: list[tuple[float, float, bool, str, str]] = dataclasses.field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.ok += other.ok
        self.failures.update(other.failures)
        for name in ("unexpected", "silent", "leaks", "events"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("committed", "rolled_back", "in_doubt"):
            getattr(self, name).update(getattr(other, name))

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def _read(alias: str, tally: Tally, key: str) -> None:
    rows = list(Ledger.objects.using(alias).filter(key=SEED).values_list("committed", flat=True))
    if rows != [True]:
        tally.silent.append(f"seed row read as {rows!r}")


def _write_atomic(alias: str, tally: Tally, key: str) -> None:
    phase = "body"
    try:
        with transaction.atomic(using=alias):
            Ledger.objects.using(alias).create(key=key)
            phase = "commit"
    except BaseException:
        (tally.in_doubt if phase == "commit" else tally.rolled_back).add(key)
        raise
    tally.committed.add(key)
    # Read your write, on whatever pooled connection comes next.
    if not Ledger.objects.using(alias).filter(key=key).exists():
        tally.silent.append(f"committed {key} not visible")


def _write_autocommit(alias: str, tally: Tally, key: str) -> None:
    try:
        Ledger.objects.using(alias).create(key=key)
    except BaseException:
        # The INSERT may have committed before the link broke.
        tally.in_doubt.add(key)
        raise
    tally.committed.add(key)


def _abort(alias: str, tally: Tally, key: str) -> None:
    tally.rolled_back.add(key)
    try:
        with transaction.atomic(using=alias):
            Ledger.objects.using(alias).create(key=key, committed=False)
            raise _Abort
    except _Abort:
        pass


# While set, "hold" requests keep their connection 250 ms (the storm).
_storm = threading.Event()


def _hold(alias: str, tally: Tally, key: str) -> None:
    """A slow transaction during the storm, a plain read after it."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [0.25 if _storm.is_set() else 0])


def _slow(alias: str, tally: Tally, key: str) -> None:
    """Longer than the alias's statement_timeout: cancelled by the server."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1)")


def _lock(alias: str, tally: Tally, key: str) -> None:
    """Takes the hot row's lock for 150 ms; others hit lock_timeout."""
    with transaction.atomic(using=alias):
        Ledger.objects.using(alias).select_for_update().get(key=HOT)
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.15)")


KINDS: dict[str, Callable[[str, Tally, str], None]] = {
    "read": _read,
    "write": _write_atomic,
    "autocommit_write": _write_autocommit,
    "abort": _abort,
    "hold": _hold,
    "slow": _slow,
    "lock": _lock,
}
NORMAL = ("read", "read", "write", "autocommit_write", "abort")


def one_request(alias: str, tally: Tally, kind: str, key: str) -> None:
    """One request as Django's handler runs it, outcome recorded in ``tally``."""
    start = monotonic()
    ok = False
    failure = ""
    request_started.send(sender=None)
    try:
        KINDS[kind](alias, tally, key)
        ok = True
        tally.ok += 1
    except DjangoDBError as exc:
        failure = type(exc).__name__
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "-"
        tally.failures[f"{failure}({cause})"] += 1
    except Exception as exc:
        failure = type(exc).__name__
        tally.unexpected.append(f"{kind}: {exc!r}")
    finally:
        request_finished.send(sender=None)
        wrapper: Any = connections[alias]
        if wrapper.connection is not None:
            tally.leaks.append(f"{kind}: {wrapper.lease_holders()}")
            wrapper.close()
        tally.events.append((start, monotonic(), ok, kind, failure))


@dataclasses.dataclass
class Outcome:
    tally: Tally
    seconds: float
    fault_end: float
    stuck: int


def run_load(
    alias: str,
    *,
    mix: tuple[str, ...],
    fault: Callable[[], None],
    after: float,
    threads: int = THREADS,
) -> Outcome:
    """Run ``threads`` request loops while ``fault()`` runs, then ``after`` more seconds."""
    stop = threading.Event()
    tallies = [Tally() for _ in range(threads)]
    run = next(_runs)

    def loop(index: int) -> None:
        rng = random.Random(index)
        try:
            for n in itertools.count():
                if stop.is_set():
                    return
                one_request(alias, tallies[index], rng.choice(mix), f"r{run}t{index}-{n}")
        finally:
            connections[alias].close()

    workers = [threading.Thread(target=loop, args=(i,), name=f"load-{i}") for i in range(threads)]
    started = monotonic()
    for worker in workers:
        worker.start()
    try:
        fault()
        fault_end = monotonic()
        stop.wait(after)
    finally:
        stop.set()
        for worker in workers:
            # A request that never returns is a failure of its own kind.
            worker.join(60)
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    stuck = sum(worker.is_alive() for worker in workers)
    return Outcome(total, monotonic() - started, fault_end, stuck)


def hold(seconds: float) -> None:
    """Keep a fault in place: its duration is the scenario's parameter, not an
    event to wait for."""
    threading.Event().wait(seconds)


def recovery_seconds(outcome: Outcome) -> float:
    """From the fault's end to the end of the last failed ordinary request."""
    last = max(
        (end for _, end, ok, kind, _failure in outcome.tally.events if not ok and kind in NORMAL),
        default=outcome.fault_end,
    )
    return max(0.0, last - outcome.fault_end)


def probe(alias: str) -> Tally:
    """After the fault: as many concurrent requests as the pool has connections
    must all work, and the pool must have every connection back afterwards."""
    outcome = run_load(alias, mix=NORMAL, fault=lambda: None, after=1.0, threads=POOL_SIZE)
    size, idle = pool_counts(alias)
    assert idle == size <= POOL_SIZE, f"pool after the probe: {size} open, {idle} idle"
    return outcome.tally


def app_sessions(admin: psycopg.Connection[Any], alias: str) -> list[tuple[int, str]]:
    rows = admin.execute(
        "SELECT pid, coalesce(state, '') FROM pg_stat_activity WHERE application_name = %s",
        [f"pgrp-{alias}"],
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def check_invariants(
    outcome: Outcome, alias: str, admin: psycopg.Connection[Any], emit: Callable[[str], None]
) -> dict[str, Any]:
    """The assertions every scenario shares; returns the figures it printed."""
    tally = outcome.tally
    rows = dict(admin.execute("SELECT key, committed FROM testapp_ledger").fetchall())
    lost = sorted(tally.committed - rows.keys())
    visible = sorted((tally.rolled_back & rows.keys()) | {k for k, c in rows.items() if not c})
    unexplained = sorted(rows.keys() - tally.committed - tally.in_doubt - {SEED, HOT})
    in_doubt_committed = len(tally.in_doubt & rows.keys())
    sessions = app_sessions(admin, alias)
    figures = {
        "requests": len(tally.events),
        "ok": tally.ok,
        "failed": tally.failed,
        "failures": dict(tally.failures),
        "committed": len(tally.committed),
        "in_doubt": f"{len(tally.in_doubt)} ({in_doubt_committed} landed)",
        "seconds": round(outcome.seconds, 1),
        "server_sessions_after": len(sessions),
    }
    emit(f"  {alias}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    assert outcome.stuck == 0, f"{outcome.stuck} request loops never returned"
    assert tally.unexpected == [], tally.unexpected[:5]
    assert tally.silent == [], tally.silent[:5]
    assert tally.leaks == [], tally.leaks[:5]
    assert lost == [], f"committed writes lost: {lost[:10]}"
    assert visible == [], f"rolled-back writes visible: {visible[:10]}"
    assert unexplained == [], f"rows no caller wrote successfully: {unexplained[:10]}"
    assert len(tally.events) == tally.ok + tally.failed
    # The pool never grows past its size; nothing idles inside a transaction.
    assert len(sessions) <= POOL_SIZE, sessions
    assert not [s for s in sessions if s[1].startswith("idle in transaction")], sessions
    return figures


def check_recovered(
    alias: str, engine: str, outcome: Outcome, bound: float, emit: Callable[[str], None]
) -> None:
    seconds = recovery_seconds(outcome)
    after = probe(alias)
    emit(f"  recovery: last failed request {seconds:.2f}s after the fault; probe {after.ok} ok")
    assert seconds <= bound, f"failures went on {seconds:.1f}s after the fault (bound {bound}s)"
    assert after.failed == 0 and after.unexpected == [], (after.failures, after.unexpected)
    assert after.ok >= 20 * POOL_SIZE


# -- scenarios -------------------------------------------------------------------


def test_killed_backends_fail_their_requests_and_lose_nothing(
    engine: str, aliases: Any, admin: psycopg.Connection[Any], figures: Any
) -> None:
    kills = 0
    with fault_alias(aliases, "kill", engine) as alias:

        def killer() -> None:
            nonlocal kills
            rng = random.Random(7)
            deadline = monotonic() + 4.0
            while monotonic() < deadline:
                pids = [pid for pid, _ in app_sessions(admin, alias)]
                if pids:
                    admin.execute("SELECT pg_terminate_backend(%s)", [rng.choice(pids)])
                    kills += 1
                hold(0.05)

        outcome = run_load(alias, mix=NORMAL, fault=killer, after=2.0)
        figures(f"kill backends [{engine}]: {kills} backends terminated")
        check_invariants(outcome, alias, admin, figures)
        assert kills >= 20
        counters = counters_by_alias()[alias]
        stale = counters["stale"]
        figures(f"  stale connections caught before use: {stale}")
        # The kills hit: requests failed, or dead connections were replaced.
        assert outcome.tally.failed + stale + counters["discards"] > 0
        check_recovered(alias, engine, outcome, bound=2.0, emit=figures)


@pytest.mark.slow
def test_server_restart_mid_load_recovers(
    engine: str, aliases: Any, pg: PostgresServer, admin: psycopg.Connection[Any], figures: Any
) -> None:
    started_at = admin.execute("SELECT pg_postmaster_start_time()").fetchone()
    with fault_alias(aliases, "restart", engine) as alias:

        def restart() -> None:
            # Let the load reach a steady state first (requests completing).
            hold(1.0)
            pg.restart()

        outcome = run_load(alias, mix=NORMAL, fault=restart, after=6.0)
        counters = counters_by_alias()[alias]
        figures(
            f"server restart [{engine}]: {counters['stale']} stale connections caught "
            f"before use, {counters['discards']} discarded"
        )
        with psycopg.connect(pg.dsn(), autocommit=True) as fresh:
            check_invariants(outcome, alias, fresh, figures)
            restarted_at = fresh.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert restarted_at != started_at
        # Every pooled connection died with the server: each was replaced,
        # after failing its request or caught before use. (When no request
        # was mid-query at the restart, none fails at all.)
        assert outcome.tally.failed + counters["stale"] + counters["discards"] > 0
        check_recovered(alias, engine, outcome, bound=6.0, emit=figures)


def test_statement_and_lock_timeouts_surface_and_keep_connections(
    engine: str, aliases: Any, admin: psycopg.Connection[Any], figures: Any
) -> None:
    with fault_alias(aliases, "timeouts", engine) as alias:
        mix = (*NORMAL, "slow", "lock", "lock")
        outcome = run_load(alias, mix=mix, fault=lambda: None, after=5.0)
        figures(f"statement/lock timeouts [{engine}]")
        check_invariants(outcome, alias, admin, figures)
        failures = outcome.tally.failures
        assert failures["OperationalError(QueryCanceled)"] > 0
        assert failures["OperationalError(LockNotAvailable)"] > 0
        # A cancelled statement leaves a usable connection: nothing discarded,
        # and only the slow/lock requests failed.
        assert counters_by_alias()[alias]["discards"] == 0
        # Only the slow and lock requests failed: no wait for a connection the
        # slow ones held ran out (borrowers are served in order on both
        # engines, SQLAlchemy's QueuePool included: see _supply.py).
        normal_failures = {e[4] for e in outcome.tally.events if not e[2] and e[3] in NORMAL}
        assert normal_failures == set(), normal_failures


def test_pool_exhaustion_storm_raises_pool_exhausted_then_recovers(
    engine: str, aliases: Any, admin: psycopg.Connection[Any], figures: Any
) -> None:
    with fault_alias(aliases, "storm", engine) as alias:

        def storm() -> None:
            _storm.set()
            try:
                hold(3.0)
            finally:
                _storm.clear()

        try:
            outcome = run_load(alias, mix=("hold", "hold", "hold", *NORMAL), fault=storm, after=2)
        finally:
            _storm.clear()
        figures(f"pool exhaustion storm [{engine}]")
        check_invariants(outcome, alias, admin, figures)
        exhausted = sum(n for name, n in outcome.tally.failures.items() if "PoolExhausted" in name)
        assert exhausted > 0
        assert exhausted == outcome.tally.failed, outcome.tally.failures
        assert counters_by_alias()[alias]["discards"] == 0
        with pytest.raises(PoolExhausted, match=alias):
            _exhaust(alias)
        # Requests queued when the storm ends wait at most the pool timeout
        # (0.5 s) behind holders still in pg_sleep: failures stop soon after.
        # The bound leaves room for a loaded 2-core machine (1.8 s was seen at
        # a load average of 7); the point is that they stop, not how fast.
        check_recovered(alias, engine, outcome, bound=3.0, emit=figures)


def _exhaust(alias: str) -> None:
    """Hold every pooled connection in other threads, then borrow once more."""
    held = threading.Barrier(POOL_SIZE + 1)
    done = threading.Event()

    def holder() -> None:
        with transaction.atomic(using=alias):
            Ledger.objects.using(alias).filter(key=SEED).exists()
            held.wait(10)
            done.wait(10)
        connections[alias].close()

    threads = [threading.Thread(target=holder) for _ in range(POOL_SIZE)]
    for thread in threads:
        thread.start()
    try:
        held.wait(10)
        Ledger.objects.using(alias).filter(key=SEED).exists()
    finally:
        done.set()
        for thread in threads:
            thread.join(10)


@pytest.mark.slow
def test_network_stall_then_cut_fails_requests_loudly_and_recovers(
    engine: str, aliases: Any, proxy: TcpProxy, admin: psycopg.Connection[Any], figures: Any
) -> None:
    accepted_before = proxy.accepted
    try:
        with fault_alias(aliases, "stall", engine) as alias:
            stalled_at_cut = 0

            def stall_then_cut() -> None:
                nonlocal stalled_at_cut
                hold(1.0)
                proxy.stall()
                # Long enough for every in-flight request to block on the link
                # and the waiting ones to time out on the pool.
                hold(2.5)
                proxy.resume()
                hold(1.0)
                proxy.stall()
                hold(1.0)
                stalled_at_cut = proxy.cut()
                proxy.resume()

            outcome = run_load(alias, mix=NORMAL, fault=stall_then_cut, after=5.0)
            figures(
                f"network stall then cut [{engine}]: {proxy.accepted - accepted_before} proxied "
                f"connections, "
                f"{stalled_at_cut} cut"
            )
            check_invariants(outcome, alias, admin, figures)
            failures = outcome.tally.failures
            assert stalled_at_cut > 0
            assert any("PoolExhausted" in name for name in failures), failures
            assert sum(n for name, n in failures.items() if "PoolExhausted" not in name) > 0
            check_recovered(alias, engine, outcome, bound=5.0, emit=figures)
    finally:
        proxy.resume()
