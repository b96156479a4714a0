"""Soak: mixed web and worker load; connections, pool sizes and memory stay flat.

Two loads run together for ``PGRP_SOAK_SECONDS`` (60 in CI; 600 for the long
form):

* web: threads in this process run request cycles (request_started, ORM
  reads and writes, transactions, a rolled-back one, a ``pinned()`` block with
  session state, a server-side iterator, request_finished) on the native
  engine's ``default`` alias, pool of 4;
* worker: a real dramatiq worker (``integrations/dramatiq``, 4 threads, pool
  of 4) kept busy with the integration's ``load`` actor (query, work outside
  the database, query).

Every 10 s the test prints the server's sessions per application, both pools'
sizes, and the RSS of this process and of the worker; at the end it asserts
that none of them grew: sessions and pool sizes never exceed the pools'
maximum, RSS grows by less than a bound after the warm-up, no request or
message failed, and every committed write is in the database.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from time import monotonic
from typing import Any

import psycopg
import pytest
from django.core.signals import request_finished, request_started
from django.db import connections, transaction

from django_pg_real_pool import pinned
from django_pg_real_pool._counters import counters_by_alias
from integrations.dramatiq import harness
from tests.support import pgstat
from tests.support.pgserver import DSN_ENV
from tests.testapp.models import Item, Ledger

SECONDS = float(os.environ.get("PGRP_SOAK_SECONDS", "60"))
# The long form outlasts pytest's default timeout (set-up and teardown included).
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(int(SECONDS) + 300)]

INTERVAL = 10.0
WEB_ALIAS = "default"
WEB_THREADS = 8
WORKER_THREADS = 4
POOL_MAX = 4
# Messages in flight at once: enough to keep every worker thread busy.
WORKER_BACKLOG = 8
# RSS may grow this much after the first interval (allocator noise, caches
# warming up); a leak per request or message grows far beyond it.
RSS_SLACK_BYTES = 24 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (dramatiq forks its worker processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found.extend(process_tree(int(child)))
    return found


@dataclasses.dataclass
class WebTally:
    ok: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    # A count, not the keys: the soak's own bookkeeping must not grow its RSS.
    committed: int = 0
    leaks: list[str] = dataclasses.field(default_factory=list)


def _web_request(rng: random.Random, key: str, tally: WebTally) -> None:
    kind = rng.choice(("read", "read", "write", "abort", "pinned", "iterate"))
    if kind == "read":
        Item.objects.using(WEB_ALIAS).filter(value__gte=0).count()
        list(Ledger.objects.using(WEB_ALIAS).order_by("-id")[:5])
    elif kind == "write":
        with transaction.atomic(using=WEB_ALIAS):
            Ledger.objects.using(WEB_ALIAS).create(key=key)
            Item.objects.using(WEB_ALIAS).filter(name="counter").update(value=1)
        tally.committed += 1
    elif kind == "abort":
        try:
            with transaction.atomic(using=WEB_ALIAS):
                Ledger.objects.using(WEB_ALIAS).create(key=key, committed=False)
                raise LookupError("rolled back on purpose")
        except LookupError:
            pass
    elif kind == "pinned":
        with pinned(using=WEB_ALIAS), connections[WEB_ALIAS].cursor() as cursor:
            cursor.execute("SET statement_timeout = '5s'")
            cursor.execute("SELECT current_setting('statement_timeout')")
            assert cursor.fetchone()[0] == "5s"
    else:
        # A server-side cursor (chunked fetch) held across iterations.
        for _ in Ledger.objects.using(WEB_ALIAS).order_by("-id")[:200].iterator(chunk_size=50):
            pass


def web_loop(index: int, stop: threading.Event, tally: WebTally) -> None:
    rng = random.Random(index)
    wrapper: Any = connections[WEB_ALIAS]
    try:
        for n in itertools.count():
            if stop.is_set():
                return
            request_started.send(sender=None)
            try:
                _web_request(rng, f"soak-{index}-{n}", tally)
                tally.ok += 1
            except Exception as exc:
                tally.errors.append(repr(exc))
            finally:
                request_finished.send(sender=None)
            if wrapper.connection is not None:
                tally.leaks.append(str(wrapper.lease_holders()))
                wrapper.close()
            # Think time: a bounded load that leaves CPU for the worker.
            stop.wait(0.002)
    finally:
        wrapper.close()


class WorkerFeeder:
    """Keeps ``WORKER_BACKLOG`` ``load`` messages in flight; counts outcomes."""

    def __init__(self, project: harness.Project) -> None:
        self.project = project
        self.done = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-feeder")

    def _run(self) -> None:
        pending = collections.deque(self.project.send("load", 20) for _ in range(WORKER_BACKLOG))
        while pending:
            outcome = self.project.outcome(pending.popleft(), timeout=60)
            if outcome.ok:
                self.done += 1
            else:
                self.failed.append(repr(outcome))
            if not self._stop.is_set():
                pending.append(self.project.send("load", 20))

    def __enter__(self) -> WorkerFeeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


@pytest.fixture(scope="module")
def dq() -> Iterator[harness.Project]:
    with harness.project(os.environ[DSN_ENV], "pgrp_soak") as project:
        yield project


def server_sessions(admin: psycopg.Connection[Any]) -> dict[str, int]:
    rows = admin.execute(
        "SELECT application_name, count(*) FROM pg_stat_activity "
        "WHERE application_name IN (%s, %s) GROUP BY 1",
        [f"pgrp-{WEB_ALIAS}", harness.APP_NAME],
    ).fetchall()
    found = {str(name): int(count) for name, count in rows}
    return {"web": found.get(f"pgrp-{WEB_ALIAS}", 0), "worker": found.get(harness.APP_NAME, 0)}


def test_soak_connections_pool_and_memory_stay_flat(
    dq: harness.Project, admin: psycopg.Connection[Any], figures: Callable[[str], None]
) -> None:
    Item.objects.using(WEB_ALIAS).create(name="counter")
    # The counters are per process and cumulative: earlier tests in the same
    # session may have discarded connections; count this run's only.
    discards_before = counters_by_alias()[WEB_ALIAS]["discards"]
    worker = dq.worker(threads=WORKER_THREADS, max_size=POOL_MAX)
    server = psycopg.connect(pgstat.admin_dsn(), autocommit=True)
    stop = threading.Event()
    tallies = [WebTally() for _ in range(WEB_THREADS)]
    threads = [
        threading.Thread(target=web_loop, args=(i, stop, tallies[i]), name=f"soak-web-{i}")
        for i in range(WEB_THREADS)
    ]
    samples: list[dict[str, Any]] = []
    figures(
        f"soak: {SECONDS:.0f}s, {WEB_THREADS} web threads + dramatiq worker "
        f"({WORKER_THREADS} threads), pools of {POOL_MAX}"
    )
    try:
        with WorkerFeeder(dq) as feeder:
            for thread in threads:
                thread.start()
            started = monotonic()
            for tick in itertools.count(1):
                stop.wait(min(INTERVAL, max(0.0, started + SECONDS - monotonic())))
                elapsed = monotonic() - started
                worker_pool = dq.outcome(dq.send("pool_stats"), timeout=60)
                assert worker_pool.ok, worker_pool
                web_size, _ = pgstat.pool_counts(WEB_ALIAS)
                sample = {
                    "t": round(elapsed),
                    "sessions": server_sessions(server),
                    "web_pool": web_size,
                    "worker_pool": worker_pool.value["pool"]["pool_size"],
                    "rss_test_mb": rss_bytes(os.getpid()) / 2**20,
                    "rss_worker_mb": sum(rss_bytes(p) for p in process_tree(worker.pid)) / 2**20,
                    "web_requests": sum(t.ok for t in tallies),
                    "worker_messages": feeder.done,
                }
                samples.append(sample)
                figures(
                    f"  t={sample['t']:>4}s sessions web={sample['sessions']['web']} "
                    f"worker={sample['sessions']['worker']}  pool web={web_size} "
                    f"worker={sample['worker_pool']}  RSS test={sample['rss_test_mb']:.1f}MB "
                    f"worker={sample['rss_worker_mb']:.1f}MB  requests={sample['web_requests']} "
                    f"messages={sample['worker_messages']}"
                )
                if elapsed >= SECONDS or tick > 1000:
                    break
            stop.set()
            for thread in threads:
                thread.join(60)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            harness.stop_gracefully(worker)
        worker.stop()
        server.close()

    web = WebTally()
    for tally in tallies:
        web.ok += tally.ok
        web.errors += tally.errors
        web.leaks += tally.leaks
        web.committed += tally.committed
    counters = counters_by_alias()[WEB_ALIAS]
    figures(
        f"  totals: {web.ok} web requests ({len(web.errors)} failed), {feeder.done} worker "
        f"messages ({len(feeder.failed)} failed); web lease counters: acquires="
        f"{counters['acquires']} resets={counters['resets']} discards={counters['discards']}"
    )
    assert not any(t.is_alive() for t in threads)
    assert web.errors == [], web.errors[:5]
    assert web.leaks == [], web.leaks[:5]
    assert feeder.failed == [], feeder.failed[:5]
    assert web.ok > 0 and feeder.done > 0
    assert len(samples) >= 2, "the soak must outlast the warm-up interval"
    # Flat: never more sessions than the pools allow, pools within their size.
    for sample in samples:
        assert sample["sessions"]["web"] <= POOL_MAX, sample
        assert sample["sessions"]["worker"] <= POOL_MAX, sample
        assert sample["web_pool"] <= POOL_MAX and sample["worker_pool"] <= POOL_MAX, sample
    baseline, last = samples[0], samples[-1]
    for key in ("rss_test_mb", "rss_worker_mb"):
        growth = (last[key] - baseline[key]) * 2**20
        assert growth < RSS_SLACK_BYTES, f"{key} grew {growth / 2**20:.1f}MB: {samples}"
    # Nothing committed was lost; nothing rolled back is visible (keys are
    # unique and only committed writes and rolled-back ones insert rows).
    ledger = Ledger.objects.using(WEB_ALIAS)
    assert ledger.filter(committed=True).count() == web.committed
    assert not ledger.filter(committed=False).exists()
    assert counters["discards"] - discards_before == 0
