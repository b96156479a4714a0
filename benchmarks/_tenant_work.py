"""The tenants benchmark's workload (``benchmarks/tenants.py``): its tables,
and what its child processes run.

Each tenant is a schema ``t<i>`` holding ``bench_item (id, tenant)``, each row
naming its schema, so a read on another tenant's path is seen.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from time import perf_counter
from typing import Any

import psycopg

from benchmarks import _harness as h
from benchmarks.webload import ERROR, OK, TIMEOUT, _classify

APPLICATION = "pgrp-tenants"
QUERY = "SELECT tenant FROM bench_item WHERE id = %s"
PROBE = "SELECT current_setting('search_path'), current_setting('app.tenant_id', true)"
ROWS = 100
REPLAY = ["search_path", "role", "app.*"]


def prepare_tenants(dsn: str, count: int) -> None:
    """Schemas ``t0`` .. ``t<count-1>``, each with its own ``bench_item`` rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(count):
            conn.execute(f"CREATE SCHEMA t{i}")
            conn.execute(f"CREATE TABLE t{i}.bench_item (id int PRIMARY KEY, tenant text)")
            conn.execute(
                f"INSERT INTO t{i}.bench_item SELECT n, 't{i}' FROM generate_series(1, %s) n",
                [ROWS],
            )
        conn.execute("ANALYZE")


def _entry(kind: str, dsn: str, pool_size: int, timeout: float) -> dict[str, Any]:
    base = "pgbouncer" if kind == "pgbouncer" else "real"
    entry = h.database_entry(
        base, dsn, pool_size=pool_size, timeout=timeout, application=APPLICATION
    )
    if kind in ("replay", "context", "rt"):
        entry["OPTIONS"]["real_pool"] = {"replay": REPLAY}
    return entry


def rt_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One round-trip phase on a pool of one connection; what each query saw."""
    h.configure_django({"default": _entry("rt", cfg["dsn"], 1, 10.0)})
    from django.db import connection

    from django_pg_real_pool import session_context

    seen: list[list[Any]] = []

    def probe() -> None:
        with connection.cursor() as cursor:
            cursor.execute(PROBE)
            seen.append(list(cursor.fetchone()))

    phase, queries = cfg["phase"], cfg["queries"]
    if phase == "baseline":
        for _ in range(queries):
            probe()
    elif phase == "same":
        with session_context(search_path="t0"):
            for _ in range(queries):
                probe()
    elif phase == "alternate":
        for i in range(queries):
            with session_context(search_path=f"t{i % 2}"):
                probe()
    elif phase == "alternate_settings":
        for i in range(queries):
            with session_context(settings={"app.tenant_id": str(i % 2)}):
                probe()
    elif phase == "plain_set":
        with connection.cursor() as cursor:
            cursor.execute("SET search_path TO t0")
        for _ in range(queries):
            probe()
    released = connection.connection is None
    connection.close()
    h.close_django_pools()
    return {"seen": seen, "released": released}


def load_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg["threads"]`` threads doing tenant requests for a window."""
    if cfg.get("switch_interval"):
        sys.setswitchinterval(cfg["switch_interval"])
    kind = cfg["kind"]
    h.configure_django({"default": _entry(kind, cfg["dsn"], cfg["pool_size"], cfg["timeout"])})
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started
    from django.db import connections

    work, tenants = cfg["work_ms"] / 1000, cfg["tenants"]
    stop = threading.Event()
    # Per thread: [ok, timeouts, errors, wrong-tenant reads] and (end, latency) of each OK.
    tallies = [[0, 0, 0, 0] for _ in range(cfg["threads"])]
    records: list[list[tuple[float, float]]] = [[] for _ in range(cfg["threads"])]

    def request(wrapper: Any, tenant: str, rnd: random.Random) -> tuple[int, int]:
        wrong = 0
        scope: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if kind == "context":
            from django_pg_real_pool import session_context

            scope = session_context(search_path=tenant)
        request_started.send(sender=WSGIHandler, environ={})
        try:
            with scope:
                if kind != "context":
                    with wrapper.cursor() as cursor:
                        cursor.execute(f"SET search_path TO {tenant}")
                for pause in (work, 0.0):
                    with wrapper.cursor() as cursor:
                        cursor.execute(QUERY, [rnd.randint(1, ROWS)])
                        wrong += cursor.fetchone()[0] != tenant
                    if pause:
                        time.sleep(pause)
        except Exception as exc:
            return _classify(exc), wrong
        finally:
            request_finished.send(sender=WSGIHandler)
        return OK, wrong

    def worker(idx: int) -> None:
        rnd = random.Random(idx)
        wrapper = connections["default"]
        tally, mine = tallies[idx], records[idx]
        try:
            while not stop.is_set():
                t0 = perf_counter()
                outcome, wrong = request(wrapper, f"t{rnd.randrange(tenants)}", rnd)
                t1 = perf_counter()
                tally[outcome] += 1
                tally[3] += wrong
                if outcome == OK:
                    mine.append((t1, t1 - t0))
        finally:
            wrapper.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(cfg["threads"])]
    for thread in threads:
        thread.start()
    time.sleep(cfg["warmup"])
    before = [sum(t[i] for t in tallies) for i in range(4)]
    w0 = perf_counter()
    time.sleep(cfg["seconds"])
    w1 = perf_counter()
    after = [sum(t[i] for t in tallies) for i in range(4)]
    stop.set()
    for thread in threads:
        thread.join()
    h.close_django_pools()
    counted = [a - b for a, b in zip(after, before, strict=True)]
    # Every request of the run, warm-up and drain included: what the server's
    # transaction count is divided by.
    total = sum(t[OK] + t[TIMEOUT] + t[ERROR] for t in tallies)
    latencies = [lat * 1000 for rs in records for end, lat in rs if w0 <= end < w1]
    return {
        "rps": counted[OK] / (w1 - w0),
        "ok": counted[OK],
        "timeouts": counted[TIMEOUT],
        "errors": counted[ERROR],
        "wrong_reads": counted[3],
        "requests_whole_run": total,
        "p50_ms": h.percentile(latencies, 50),
        "p99_ms": h.percentile(latencies, 99),
    }
