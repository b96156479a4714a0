"""Web workload: T threads share a pool of P connections.

Each simulated request is what a Django view does: ``request_started``, a
query, ``--work-ms`` of non-database work (an upstream HTTP call, a template),
a second query, ``request_finished`` (where Django closes or returns the
connection). Every configuration runs in its own process for each T; this
process samples ``pg_stat_activity`` from a separate connection meanwhile.

Configurations (``--configs``):

* held: stock engine, each thread keeps its own connection (T server
  connections): the reference for throughput and client CPU per request;
* stock: stock engine on Django's native pool (max_size P);
* real / realdj: this engine on the native pool / on django-db-connection-pool (P);
* pgbouncer: stock engine with persistent connections to a PgBouncer in
  transaction mode with P server connections (started here, stopped after).

ideal = T / (W + 2q), q = one query's round trip measured on a direct connection.
Client CPU = this process's CPU time (all threads) during the window / requests.

Usage::

    python -m benchmarks.webload [--threads 8,32,128,256] [--seconds 4] [--rss-seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from time import perf_counter, process_time
from typing import Any

import psycopg

from benchmarks import _harness as h
from benchmarks._pgbouncer import PgBouncer, find_pgbouncer

QUERY = "SELECT name FROM bench_item WHERE id = %s"
ROWS = 1000
APPLICATION = "pgrp-webload"
DEFAULT_CONFIGS = "held,stock,pgbouncer,real"
OK, TIMEOUT, ERROR = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="8,32,128,256", help="comma-separated T values")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"from {sorted(h.KINDS)}")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before the window")
    parser.add_argument(
        "--lease-cpu",
        action="store_true",
        help="also time this engine's borrows and returns in thread CPU, queued borrows apart "
        "(adds about 1 µs per call: the run's other CPU figures are then not for comparing)",
    )
    parser.add_argument(
        "--rss-seconds",
        type=float,
        default=10.0,
        help="duration of the 256-thread RSS run on this engine (0: skip; 60 for the full figure)",
    )
    add_workload_arguments(parser)
    return parser.parse_args(argv)


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The request and pool knobs webload and paired share."""
    parser.add_argument("--pool-size", type=int, default=4, help="P: pool max_size (default 4)")
    parser.add_argument("--pool-timeout", type=float, default=5.0, help="pool timeout, seconds")
    parser.add_argument("--work-ms", type=float, default=50.0, help="W: non-database work, ms")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval() in the load processes, seconds (default: Python's 0.005)",
    )
    parser.add_argument("--no-install", action="store_true", help="never apt-get pgbouncer")
    parser.add_argument("--child", help=argparse.SUPPRESS)


# -- the child: one configuration, T threads --------------------------------------


def workload_params(args: argparse.Namespace, q_ms: float, q_idle_ms: float) -> dict[str, Any]:
    """The request's parameters, as webload and paired print them."""
    return {
        "pool max_size P": args.pool_size,
        "work W": f"{args.work_ms:g} ms",
        "query": QUERY,
        "query time q (direct connection, median)": f"{q_ms:.3f} ms",
        "the same query after W of idleness (median)": f"{q_idle_ms:.3f} ms",
    }


def conditions_params(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    """The interpreter's and the machine's state for the run."""
    return {
        "GIL switch interval": f"{args.switch_interval or sys.getswitchinterval():g} s",
        "load average at start": h.load_average(),
        **h.machine(dsn),
    }


def _classify(exc: BaseException) -> int:
    """TIMEOUT when the pool (or PgBouncer) gave up waiting for a connection."""
    from psycopg_pool import PoolTimeout

    from django_pg_real_pool.errors import PoolExhausted

    timeouts: tuple[type[BaseException], ...] = (PoolTimeout, PoolExhausted)
    with contextlib.suppress(ImportError):
        from sqlalchemy.exc import TimeoutError as QueuePoolTimeout

        timeouts += (QueuePoolTimeout,)
    seen: BaseException | None = exc
    while seen is not None:
        # PgBouncer reports its wait timeout only as an error message.
        if isinstance(seen, timeouts) or "query_wait_timeout" in str(seen):
            return TIMEOUT
        seen = seen.__cause__ or seen.__context__
    return ERROR


def one_request(wrapper: Any, rnd: random.Random, work: float) -> int:
    """What a Django view does: a query, non-database work, a query, then
    ``request_finished`` (where Django returns or closes connections).
    Returns OK, TIMEOUT or ERROR."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished, request_started

    outcome = OK
    request_started.send(sender=WSGIHandler, environ={})
    try:
        for pause in (work, 0.0):
            with wrapper.cursor() as cursor:
                cursor.execute(QUERY, [rnd.randint(1, ROWS)])
                cursor.fetchone()
            if pause:
                time.sleep(pause)
    except Exception as exc:
        outcome = _classify(exc)
    finally:
        request_finished.send(sender=WSGIHandler)
    return outcome


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("switch_interval"):
        # How long a thread whose query returned may wait for the GIL (and so
        # keep its connection) while other threads run Python code.
        sys.setswitchinterval(cfg["switch_interval"])
    h.configure_django(
        {
            "default": h.database_entry(
                cfg["kind"],
                cfg["dsn"],
                pool_size=cfg["pool_size"],
                timeout=cfg["pool_timeout"],
                application=APPLICATION,
            )
        }
    )
    from django.db import connections

    lease_cpu = LeaseCpu() if cfg.get("lease_cpu") and cfg["kind"] in ("real", "realdj") else None
    work = cfg["work_ms"] / 1000
    stop = threading.Event()
    records: list[list[tuple[float, float, int]]] = [[] for _ in range(cfg["threads"])]
    # The memory run keeps no per-request records: they would be the growth it measures.
    keep = not cfg.get("memory_run")
    tallies = [[0, 0, 0] for _ in range(cfg["threads"])]

    def worker(idx: int) -> None:
        rnd = random.Random(idx)
        mine, tally = records[idx], tallies[idx]
        wrapper = connections["default"]
        try:
            while not stop.is_set():
                t0 = perf_counter()
                outcome = one_request(wrapper, rnd, work)
                tally[outcome] += 1
                if keep:
                    t1 = perf_counter()
                    mine.append((t1, t1 - t0, outcome))
        finally:
            wrapper.close()

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"req-{i}") for i in range(cfg["threads"])
    ]
    for thread in threads:
        thread.start()
    time.sleep(cfg["warmup"])
    w0, cpu0, rss0 = perf_counter(), process_time(), h.rss_mb()
    counted0 = [sum(t[i] for t in tallies) for i in (OK, TIMEOUT, ERROR)]
    rss_series = [(0.0, rss0)]
    end = w0 + cfg["seconds"]
    while (now := perf_counter()) < end:
        time.sleep(min(1.0, end - now))
        rss_series.append((perf_counter() - w0, h.rss_mb()))
    w1, cpu1 = perf_counter(), process_time()
    counted = [sum(t[i] for t in tallies) - counted0[i] for i in (OK, TIMEOUT, ERROR)]
    stop.set()
    for thread in threads:
        thread.join()
    lease = lease_counters() if cfg["kind"] in ("real", "realdj") else None
    if lease is not None and lease_cpu is not None:
        lease.update(lease_cpu.figures(sum(sum(t) for t in tallies)))
        lease_cpu.remove()
    h.close_django_pools()

    window = [r for rs in records for r in rs if w0 <= r[0] < w1]
    latencies = [r[1] * 1000 for r in window if r[2] == OK]
    if keep:
        counted = [sum(1 for r in window if r[2] == i) for i in (OK, TIMEOUT, ERROR)]
    seconds = w1 - w0
    return {
        "requests": sum(counted),
        "ok": counted[OK],
        "timeouts": counted[TIMEOUT],
        "errors": counted[ERROR],
        "rps": counted[OK] / seconds,
        "p50_ms": h.percentile(latencies, 50),
        "p99_ms": h.percentile(latencies, 99),
        "cpu_us_per_request": (cpu1 - cpu0) / max(1, sum(counted)) * 1e6,
        "cpu_share": (cpu1 - cpu0) / seconds,
        "rss_start_mb": rss0,
        "rss_end_mb": rss_series[-1][1],
        "rss_series": rss_series,
        "window_s": seconds,
        "lease": lease,
    }


def lease_counters() -> dict[str, float]:
    """This engine's own view over the whole run: how long a borrow waited for
    a connection, how many slept in the lane's queue for a release, and how
    long a borrow kept its connection (includes waiting for the GIL)."""
    from django_pg_real_pool import _counters

    counters = _counters.counters_by_alias().get("default") or Counter()
    acquires = max(1, counters.get("acquires", 0))
    return {
        "acquires": counters.get("acquires", 0),
        "queued": counters.get("queued", 0),
        "mean_wait_us": counters.get("wait_us", 0) / acquires,
        "mean_hold_us": counters.get("use_us", 0) / acquires,
    }


class LeaseCpu:
    """Thread CPU time spent in this engine's borrows (those that slept in the
    lane's queue apart) and returns, by wrapping them (``--lease-cpu``).

    Thread CPU leaves out the time a thread sleeps (for a release, for the
    GIL) but counts the system calls and context switches of its sleeping and
    waking: the cost a borrow that queues adds under the GIL.
    """

    def __init__(self) -> None:
        from django_pg_real_pool._lease import LeaseMixin

        self._cls = LeaseMixin
        self._originals = {
            name: getattr(LeaseMixin, name) for name in ("_lease_acquire", "_lease_put")
        }
        self._lock = threading.Lock()
        # [CPU seconds, calls] for: borrows that took a connection without
        # sleeping, borrows that slept in the queue, returns.
        self.totals = {"fast": [0.0, 0], "queued": [0.0, 0], "return": [0.0, 0]}
        acquire, put = self._originals.values()
        clock = time.thread_time

        def timed_acquire(wrapper: Any) -> None:
            # The wrapper's own counter tells whether the borrow slept in the queue.
            queued = wrapper._lease_counters.queued
            c0 = clock()
            try:
                acquire(wrapper)
            finally:
                slept = wrapper._lease_counters.queued != queued
                self._add("queued" if slept else "fast", clock() - c0)

        def timed_put(wrapper: Any, *, forced: bool) -> None:
            c0 = clock()
            try:
                put(wrapper, forced=forced)
            finally:
                self._add("return", clock() - c0)

        wrappers = {"_lease_acquire": timed_acquire, "_lease_put": timed_put}
        for name, wrapper in wrappers.items():
            setattr(LeaseMixin, name, wrapper)

    def _add(self, key: str, seconds: float) -> None:
        with self._lock:
            total = self.totals[key]
            total[0] += seconds
            total[1] += 1

    def remove(self) -> None:
        for name, original in self._originals.items():
            setattr(self._cls, name, original)

    def figures(self, requests: int) -> dict[str, float]:
        """Mean thread CPU per call of each kind, and the engine's per request
        (over the whole run, warm-up included)."""
        out: dict[str, float] = {}
        for key, (seconds, calls) in self.totals.items():
            out[f"cpu_{key}_us"] = seconds / max(1, calls) * 1e6
            out[f"calls_{key}"] = calls
        engine = sum(seconds for seconds, _ in self.totals.values())
        out["cpu_engine_us_per_request"] = engine / max(1, requests) * 1e6
        return out


# -- the parent: runs children, watches the server --------------------------------


def prepare_data(dsn: str, idle_s: float) -> tuple[float, float]:
    """Create the table; return the median time (ms) of one query on a direct
    connection: back to back, and after ``idle_s`` of idleness (what a request
    sees after its non-database work; machines that idle their CPUs answer it
    more slowly)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_item (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            "INSERT INTO bench_item SELECT i, 'item ' || i FROM generate_series(1, %s) i", [ROWS]
        )
        conn.execute("ANALYZE bench_item")
        rnd = random.Random(0)
        times = []
        for _ in range(500):
            t0 = perf_counter()
            with conn.cursor() as cursor:
                cursor.execute(QUERY, [rnd.randint(1, ROWS)])
                cursor.fetchone()
            times.append(perf_counter() - t0)
        after_idle = []
        for _ in range(30):
            time.sleep(idle_s)
            t0 = perf_counter()
            with conn.cursor() as cursor:
                cursor.execute(QUERY, [rnd.randint(1, ROWS)])
                cursor.fetchone()
            after_idle.append(perf_counter() - t0)
    return statistics.median(times) * 1000, statistics.median(after_idle) * 1000


def run_one(
    kind: str,
    threads: int,
    args: argparse.Namespace,
    dsn: str,
    sampler: h.ServerSampler,
    bouncer_bin: str | None,
    seconds: float | None = None,
    memory_run: bool = False,
) -> dict[str, Any]:
    cfg = {
        "kind": kind,
        "dsn": dsn,
        "threads": threads,
        "pool_size": args.pool_size,
        "pool_timeout": args.pool_timeout,
        "work_ms": args.work_ms,
        "seconds": seconds or args.seconds,
        "warmup": args.warmup,
        "switch_interval": args.switch_interval,
        "memory_run": memory_run,
        "lease_cpu": args.lease_cpu and not memory_run,
    }
    budget = cfg["seconds"] + args.warmup + args.pool_timeout + 60
    sampler.wait_for_no_sessions()
    with contextlib.ExitStack() as stack:
        bouncer = None
        if kind == "pgbouncer":
            assert bouncer_bin is not None
            bouncer = PgBouncer(
                bouncer_bin,
                dsn,
                pool_size=args.pool_size,
                wait_timeout=args.pool_timeout,
                max_client_conn=max(1024, threads + 64),
            )
            stack.enter_context(bouncer)
            cfg["dsn"] = bouncer.dsn()
        t0 = sampler.now()
        proxy_cpu0 = bouncer.cpu_seconds() if bouncer else 0.0
        result = h.run_child("benchmarks.webload", cfg, budget)
        if bouncer is not None:
            used = bouncer.cpu_seconds() - proxy_cpu0
            result["proxy_cpu_us_per_request"] = used / max(1, result["requests"]) * 1e6
        result["peak_server_connections"] = sampler.peak(since=t0)
    return result


def main() -> None:
    args = parse_args()
    if args.child:
        result = child(json.loads(args.child))
        print("RESULT " + json.dumps(result), flush=True)
        return
    thread_counts = [int(t) for t in args.threads.split(",")]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for kind in configs:
        if kind not in h.KINDS:
            raise SystemExit(f"unknown configuration {kind!r}; known: {sorted(h.KINDS)}")
    when = h.stamp()
    bouncer_bin, bouncer_reason = (None, "")
    if "pgbouncer" in configs:
        bouncer_bin, bouncer_reason = find_pgbouncer(install=not args.no_install)

    results: dict[str, dict[str, Any]] = {}
    with h.postgres() as (admin, dsn):
        q_ms, q_idle_ms = prepare_data(dsn, args.work_ms / 1000)
        params = {
            "command": h.command("benchmarks.webload"),
            "threads T": thread_counts,
            "pool timeout": f"{args.pool_timeout:g} s",
            **workload_params(args, q_ms, q_idle_ms),
            "window per run": f"{args.seconds:g} s after {args.warmup:g} s warm-up",
            "configurations": {k: h.KINDS[k] for k in configs},
            **conditions_params(args, dsn),
        }
        h.print_params("webload: T threads on a pool of P connections", params)
        with h.ServerSampler(admin, h.BENCH_DB) as sampler:
            for threads in thread_counts:
                for kind in configs:
                    key = f"{kind}/{threads}"
                    if kind == "pgbouncer" and bouncer_bin is None:
                        results[key] = {"unavailable": bouncer_reason}
                        print(f"T={threads:<4} {kind:<10} unavailable: {bouncer_reason}")
                        continue
                    t0 = time.monotonic()
                    r = run_one(kind, threads, args, dsn, sampler, bouncer_bin)
                    results[key] = r
                    print(
                        f"T={threads:<4} {kind:<10} {r['rps']:8.1f} req/s"
                        f"  p99 {r['p99_ms']:7.1f} ms  timeouts {r['timeouts']:<4}"
                        f"  peak conns {r['peak_server_connections']:<4}"
                        f" ({time.monotonic() - t0:.1f} s)",
                        flush=True,
                    )
            rss = None
            if args.rss_seconds > 0:
                print(f"RSS run: real, T=256, {args.rss_seconds:g} s ...", flush=True)
                rss = run_one(
                    "real", 256, args, dsn, sampler, None, seconds=args.rss_seconds, memory_run=True
                )
            server_series = list(sampler.series)
            if sampler.error is not None:
                print(f"(the pg_stat_activity sampler failed: {sampler.error!r})")

    report(results, rss, thread_counts, configs, args, q_ms)
    payload = {
        "params": params,
        "results": results,
        "rss": rss,
        "server_series": server_series,
    }
    path = h.write_json("webload", payload, when)
    print(f"\nRaw figures: {path}")
    plot(results, rss, thread_counts, configs, args, q_ms, h.png_path("webload", when))


def _ideal(threads: int, args: argparse.Namespace, q_ms: float) -> float:
    return threads / ((float(args.work_ms) + 2 * q_ms) / 1000)


def report(
    results: dict[str, dict[str, Any]],
    rss: dict[str, Any] | None,
    thread_counts: list[int],
    configs: list[str],
    args: argparse.Namespace,
    q_ms: float,
) -> None:
    print("\n### Requests/s against ideal, latency, connections, client CPU\n")
    rows = []
    for threads in thread_counts:
        ideal = _ideal(threads, args, q_ms)
        held = results.get(f"held/{threads}", {})
        for kind in configs:
            r = results[f"{kind}/{threads}"]
            if "unavailable" in r:
                rows.append([threads, kind, *["n/a"] * 10])
                continue
            cpu = r["cpu_us_per_request"]
            vs_held = f"{cpu / held['cpu_us_per_request']:.2f}" if "rps" in held else "n/a"
            proxy = r.get("proxy_cpu_us_per_request")
            rows.append(
                [
                    threads,
                    kind,
                    f"{r['rps']:.1f}",
                    f"{ideal:.1f}",
                    f"{r['rps'] / ideal:.3f}",
                    r["timeouts"],
                    r["errors"],
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    r["peak_server_connections"],
                    f"{cpu:.0f}" + (f" (+{proxy:.0f} proxy)" if proxy is not None else ""),
                    vs_held,
                ]
            )
    headers = [
        "T",
        "config",
        "req/s",
        "ideal",
        "of ideal",
        "timeouts",
        "errors",
        "p50 ms",
        "p99 ms",
        "peak server conns",
        "client CPU µs/req",
        "CPU / held",
    ]
    print(h.markdown_table(headers, rows))
    unavailable = {r["unavailable"] for r in results.values() if "unavailable" in r}
    for reason in unavailable:
        print(f"\npgbouncer rows unavailable: {reason}")
    print(
        "\n(proxy = PgBouncer's own CPU per request, on top of the client's; "
        "CPU / held = client CPU per request relative to the held configuration at the same T)"
    )
    print_targets(results, thread_counts, args, q_ms)
    leases = [
        [
            threads,
            kind,
            f"{lease['acquires']:.0f}",
            f"{lease.get('queued', 0) / max(1, lease['acquires']):.2f}",
            f"{lease['mean_wait_us']:.0f}",
            f"{lease['mean_hold_us']:.0f}",
        ]
        for threads in thread_counts
        for kind in configs
        if (lease := results[f"{kind}/{threads}"].get("lease"))
    ]
    if leases:
        print("\n### This engine's own counters (whole run, per borrow)\n")
        headers = ["T", "config", "borrows", "queued", "mean wait µs", "mean hold µs"]
        print(h.markdown_table(headers, leases))
        print(
            "\n(queued = share of borrows that slept in the lane's queue until a release "
            "handed them its connection: each costs the thread one more sleep and wake-up, "
            "and one more wait for the GIL. "
            "hold = borrow to return: the query's round trip, slower after idleness (see "
            "the parameters), plus the thread's Python time with the connection, including "
            "waits for the GIL. P connections serve at most P / (2 x hold) requests/s.)"
        )
    timed = [
        [
            threads,
            kind,
            f"{lease['cpu_fast_us']:.1f} ({lease['calls_fast']})",
            f"{lease['cpu_queued_us']:.1f} ({lease['calls_queued']})",
            f"{lease['cpu_return_us']:.1f}",
            f"{lease['cpu_engine_us_per_request']:.0f}",
            f"{results[f'{kind}/{threads}']['cpu_us_per_request']:.0f}",
        ]
        for threads in thread_counts
        for kind in configs
        if (lease := results[f"{kind}/{threads}"].get("lease")) and "cpu_fast_us" in lease
    ]
    if timed:
        print("\n### This engine's borrows and returns in thread CPU (--lease-cpu)\n")
        headers = [
            "T",
            "config",
            "borrow, no sleep µs (n)",
            "borrow that queued µs (n)",
            "return µs",
            "engine µs/req",
            "client CPU µs/req",
        ]
        print(h.markdown_table(headers, timed))
        print(
            "\n(thread CPU leaves out sleeping but counts the system calls and context "
            "switches of sleeping and waking; the timing itself adds about 1 µs per call)"
        )
    if rss is not None:
        print("\n### Memory: RSS of a 256-thread process on this engine\n")
        growth = rss["rss_end_mb"] - rss["rss_start_mb"]
        row = [
            "real",
            256,
            f"{rss['window_s']:.0f}",
            f"{rss['rss_start_mb']:.1f}",
            f"{rss['rss_end_mb']:.1f}",
            f"{growth:+.1f}",
            f"{rss['rps']:.1f}",
        ]
        headers = ["config", "T", "seconds", "RSS start MB", "RSS end MB", "growth MB", "req/s"]
        print(h.markdown_table(headers, [row]))


def print_targets(
    results: dict[str, dict[str, Any]],
    thread_counts: list[int],
    args: argparse.Namespace,
    q_ms: float,
) -> None:
    """The issue's targets next to what this run measured (facts, not assertions)."""
    rows = []

    def get(kind: str, threads: int) -> dict[str, Any] | None:
        r = results.get(f"{kind}/{threads}")
        return r if r is not None and "rps" in r else None

    if 32 in thread_counts and (real := get("real", 32)):
        share = real["rps"] / _ideal(32, args, q_ms)
        rows.append(["T=32: >= 0.97 of ideal", f"{share:.3f}", share >= 0.97])
        rows.append(["T=32: zero pool timeouts", real["timeouts"], real["timeouts"] == 0])
        peak = real["peak_server_connections"]
        rows.append([f"T=32: <= {args.pool_size} server conns", peak, peak <= args.pool_size])
        if bouncer := get("pgbouncer", 32):
            ratio = real["rps"] / bouncer["rps"]
            rows.append(["T=32: throughput = PgBouncer's (>= 0.99)", f"{ratio:.3f}", ratio >= 0.99])
            rows.append(
                [
                    "T=32: p99 <= PgBouncer's",
                    f"{real['p99_ms']:.1f} vs {bouncer['p99_ms']:.1f} ms",
                    real["p99_ms"] <= bouncer["p99_ms"],
                ]
            )
    if 128 in thread_counts and (real := get("real", 128)) and (bouncer := get("pgbouncer", 128)):
        ratio = real["rps"] / bouncer["rps"]
        rows.append(["T=128: throughput >= PgBouncer's", f"{ratio:.3f}", ratio >= 1.0])
    for threads in thread_counts:
        if (real := get("real", threads)) and (held := get("held", threads)):
            ratio = real["cpu_us_per_request"] / held["cpu_us_per_request"]
            rows.append([f"T={threads}: client CPU/req <= 1.1x held", f"{ratio:.2f}", ratio <= 1.1])
    if rows:
        print("\n### Targets (issue 4) against this run\n")
        table = [[t, m, "yes" if ok else "NO"] for t, m, ok in rows]
        print(h.markdown_table(["target", "measured", "met"], table))


def plot(
    results: dict[str, dict[str, Any]],
    rss: dict[str, Any] | None,
    thread_counts: list[int],
    configs: list[str],
    args: argparse.Namespace,
    q_ms: float,
    png: Any,
) -> None:
    plt = h.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    (ax_rps, ax_p99), (ax_cpu, ax_rss) = axes
    ideal = [_ideal(t, args, q_ms) for t in thread_counts]
    ax_rps.plot(thread_counts, ideal, "k--", label="ideal T/(W+2q)")
    for kind in configs:
        points = [(t, results[f"{kind}/{t}"]) for t in thread_counts]
        points = [(t, r) for t, r in points if "rps" in r]
        if not points:
            continue
        xs = [t for t, _ in points]
        ax_rps.plot(xs, [r["rps"] for _, r in points], "o-", label=kind)
        ax_p99.plot(xs, [r["p99_ms"] for _, r in points], "o-", label=kind)
        ax_cpu.plot(xs, [r["cpu_us_per_request"] for _, r in points], "o-", label=kind)
    for ax, title, unit in (
        (ax_rps, "Throughput", "requests/s"),
        (ax_p99, "p99 latency", "ms"),
        (ax_cpu, "Client CPU per request", "µs"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(thread_counts, [str(t) for t in thread_counts])
        ax.set_xlabel("threads T")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=8)
    ax_p99.set_yscale("log")
    if rss is not None:
        xs = [t for t, _ in rss["rss_series"]]
        ax_rss.plot(xs, [m for _, m in rss["rss_series"]], "o-", label="real, T=256")
        ax_rss.set_xlabel("seconds into the window")
        ax_rss.set_ylabel("RSS MB")
        ax_rss.set_title("Memory of a 256-thread process")
        ax_rss.legend(fontsize=8)
    else:
        ax_rss.set_axis_off()
    fig.suptitle(f"webload: pool max_size={args.pool_size}, W={args.work_ms:g} ms")
    h.save_figure(plt, fig, png)


if __name__ == "__main__":
    main()
