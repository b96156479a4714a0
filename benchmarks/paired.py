"""The web workload with its configurations side by side in one process.

Separate runs on a shared machine drift by 10-20 % from one minute to the next
(other tenants, CPU frequency): more than the differences ``webload`` is after.
Here one process runs T threads doing webload's request (a query, ``--work-ms``
of non-database work, a query, ``request_finished``) and the configuration the
threads use (one Django alias each) switches every ``--phase`` seconds:
held -> pgbouncer -> real -> held ... Every configuration thus samples the same
minutes of the machine, and their ratios hold still.

Per configuration: requests/s (requests started during its phases / their
length), client CPU per request (this process's CPU time during its phases and
their drains / its requests), PgBouncer's own CPU during the same, p50/p99.

At a switch, no request of the next configuration starts before every thread
has finished its request in flight (the drain, reported apart; its requests'
latencies and CPU count for their configuration): a configuration never runs
beside another one's requests. Letting them overlap put one configuration's
load on the next one's figures, and unevenly: traced borrows of this engine
that straddled into a ``held`` phase waited 100-290 ms in its queue, because
each hand-over needs the GIL, which 128 busy threads then held; PgBouncer
hands its server connections over without it. Each thread then begins the
next phase after a random part of W, as it would in a steady state
(``--start together``: all at once, a burst of T requests). Peak server
connections come from ``webload`` (separate runs), not from here.

``--lane-queue both`` adds, for each of this engine's configurations
(``real``, ``realdj``), a twin whose supply sends borrowers that find nothing
to the pool's own queue instead of its own (``Supply.lane_queue = False`` on
the live supply; named ``<config>-poolq``): both sides of that decision then
sample the same minutes.

Usage::

    python -m benchmarks.paired [--threads 32,128] [--seconds 18] [--phase 1]
        [--configs held,real,realdj] [--lane-queue on|off|both]
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
from collections.abc import Iterator
from time import perf_counter, process_time
from typing import Any

from benchmarks import _harness as h
from benchmarks._pgbouncer import PgBouncer, find_pgbouncer
from benchmarks.webload import (
    OK,
    add_workload_arguments,
    conditions_params,
    one_request,
    prepare_data,
    workload_params,
)

APPLICATION = "pgrp-paired"
CONFIGS = ("held", "pgbouncer", "real", "realdj")
#: This engine's configurations (their supply has the lane-queue switch).
OURS = ("real", "realdj")
POOLQ = "-poolq"


def kind_of(config: str) -> str:
    """The harness configuration behind ``config`` (a ``-poolq`` twin's base)."""
    return config.removesuffix(POOLQ)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="32,128", help="comma-separated T values")
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated, from {list(CONFIGS)}"
    )
    parser.add_argument(
        "--seconds", type=float, default=18.0, help="measured time per T (default 18)"
    )
    parser.add_argument("--phase", type=float, default=1.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per configuration")
    parser.add_argument(
        "--lane-queue",
        choices=("on", "off", "both"),
        default="on",
        help="where this engine's borrowers wait once every connection is out: in the "
        "supply's queue (on, the default), in the pool's own queue (off), or both side "
        "by side as twin configurations '<config>-poolq' (both)",
    )
    parser.add_argument(
        "--start",
        choices=("staggered", "together"),
        default="staggered",
        help="how a phase's threads begin: each after a random part of W, as in a steady "
        "state (default), or all at once (a burst of T requests)",
    )
    add_workload_arguments(parser)
    return parser.parse_args()


# -- the child: T threads, configurations alternating -------------------------------


def new_tally(configs: list[str]) -> dict[str, Any]:
    """One thread's counts: per configuration [ok, timeouts, errors] and latencies (ms)."""
    return {
        "counted": {kind: [0, 0, 0] for kind in configs},
        "latencies": {kind: [] for kind in configs},
    }


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("switch_interval"):
        sys.setswitchinterval(cfg["switch_interval"])
    configs: list[str] = cfg["configs"]
    entries = {
        kind: h.database_entry(
            kind_of(kind),
            cfg["dsns"][kind],
            pool_size=cfg["pool_size"],
            timeout=cfg["pool_timeout"],
            application=APPLICATION,
        )
        for kind in configs
    }
    # Django requires a 'default' alias; nothing uses it.
    h.configure_django({"default": entries[configs[0]], **entries})
    from django.db import connections

    for kind in configs:
        if kind_of(kind) in OURS:
            # The supply exists from the first borrow on; the switch is set
            # on the live one, before any request of the run.
            connections[kind].ensure_connection()
            connections[kind].close()
            lane_queue = cfg["lane_queue"] != "off" and not kind.endswith(POOLQ)
            connections[kind]._lease_supply.lane_queue = lane_queue
    work = cfg["work_ms"] / 1000
    threads_n = cfg["threads"]
    staggered = cfg["start"] == "staggered"
    stop = threading.Event()
    # The configuration requests start on (None: drained, no request starts).
    phase: list[str | None] = [None]
    gate = threading.Condition()
    parked = [0]  # threads waiting at the gate
    # Per thread, merged at the end: no shared counter is ever incremented.
    per_thread = [new_tally(configs) for _ in range(threads_n)]

    def worker(idx: int) -> None:
        rnd = random.Random(idx)
        offsets = random.Random(-1 - idx)
        try:
            while not stop.is_set():
                kind = phase[0]
                if kind is None:
                    with gate:
                        parked[0] += 1
                        gate.notify_all()
                        while phase[0] is None and not stop.is_set():
                            gate.wait()
                        parked[0] -= 1
                    if staggered and not stop.is_set():
                        # Arrive as in a steady state: this thread was in its
                        # non-database work when the phase began.
                        time.sleep(offsets.uniform(0, work))
                    continue
                t0 = perf_counter()
                outcome = one_request(connections[kind], rnd, work)
                tally = per_thread[idx]  # replaced when the warm-up ends
                tally["counted"][kind][outcome] += 1
                if outcome == OK:
                    tally["latencies"][kind].append((perf_counter() - t0) * 1000)
        finally:
            for kind in configs:
                connections[kind].close()

    def start(kind: str) -> None:
        with gate:
            phase[0] = kind
            gate.notify_all()

    def drain() -> None:
        """No new request; return once every thread finished its own."""
        deadline = time.monotonic() + cfg["pool_timeout"] + 60
        with gate:
            phase[0] = None
            while parked[0] < threads_n:
                if not gate.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"{threads_n - parked[0]} threads never finished")

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"req-{i}") for i in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    for kind in configs:  # warm-up: every alias connected, pools filled
        start(kind)
        time.sleep(cfg["warmup"])
        drain()
    for idx in range(threads_n):
        per_thread[idx] = new_tally(configs)
    wall = dict.fromkeys(configs, 0.0)
    cpu = dict.fromkeys(configs, 0.0)
    proxy_cpu = dict.fromkeys(configs, 0.0)
    drains: dict[str, list[float]] = {kind: [] for kind in configs}
    # The engine's borrows, how many of them queued in its lane, and how
    # many reached psycopg_pool (the rest took a parked connection) or
    # queued there.
    borrows = {kind: [0, 0, 0, 0] for kind in configs}
    pid = cfg["bouncer_pid"]

    def bouncer_cpu() -> float:
        return h.cpu_seconds(pid) if pid is not None else 0.0

    end = time.monotonic() + cfg["seconds"]
    try:
        while time.monotonic() < end:
            for kind in configs:
                w0, c0, p0 = perf_counter(), process_time(), bouncer_cpu()
                b0 = borrow_counts(kind)
                start(kind)
                time.sleep(cfg["phase"])  # the phase's length, not a wait for an event
                d0 = perf_counter()
                drain()
                w1 = perf_counter()
                drains[kind].append(w1 - d0)
                wall[kind] += d0 - w0
                cpu[kind] += process_time() - c0
                proxy_cpu[kind] += bouncer_cpu() - p0
                for i, value in enumerate(borrow_counts(kind)):
                    borrows[kind][i] += value - b0[i]
    finally:
        # Also when a drain gave up: the threads must not keep the process alive.
        stop.set()
        with gate:
            gate.notify_all()
    for thread in threads:
        thread.join()
    h.close_django_pools()

    results: dict[str, Any] = {}
    for kind in configs:
        ok, timeouts, errors = (sum(t["counted"][kind][i] for t in per_thread) for i in range(3))
        latencies = [ms for t in per_thread for ms in t["latencies"][kind]]
        done = max(1, ok + timeouts + errors)
        results[kind] = {
            "ok": ok,
            "timeouts": timeouts,
            "errors": errors,
            "seconds": wall[kind],
            "rps": ok / wall[kind],
            "cpu_us_per_request": cpu[kind] / done * 1e6,
            "proxy_cpu_us_per_request": proxy_cpu[kind] / done * 1e6,
            "p50_ms": h.percentile(latencies, 50),
            "p99_ms": h.percentile(latencies, 99),
            "borrows": borrows[kind][0],
            "lane_queued": borrows[kind][1],
            "pool_requests": borrows[kind][2],
            "pool_queued": borrows[kind][3],
            "mean_drain_ms": statistics.mean(drains[kind]) * 1000,
        }
    return {"configs": results}


def borrow_counts(kind: str) -> tuple[int, int, int, int]:
    """(engine borrows, borrows that queued in the supply, psycopg_pool
    requests, requests that queued there) so far."""
    if kind_of(kind) not in OURS:
        return (0, 0, 0, 0)
    from django.db import connections

    from django_pg_real_pool._counters import counters_by_alias

    counters: dict[str, int] = dict(counters_by_alias().get(kind, {}))
    supply = connections[kind]._lease_supply
    stats = supply.adapter.stats() if supply is not None else {}
    return (
        counters.get("acquires", 0),
        counters.get("queued", 0),
        stats.get("requests_num", 0),
        stats.get("requests_queued", 0),
    )


# -- the parent ----------------------------------------------------------------------


@contextlib.contextmanager
def bouncer_for(
    configs: list[str], dsn: str, args: argparse.Namespace, threads: int
) -> Iterator[PgBouncer | None]:
    if "pgbouncer" not in configs:
        yield None
        return
    binary, reason = find_pgbouncer(install=not args.no_install)
    if binary is None:
        raise SystemExit(f"pgbouncer is unavailable ({reason}); drop it from --configs")
    with PgBouncer(
        binary,
        dsn,
        pool_size=args.pool_size,
        wait_timeout=args.pool_timeout,
        max_client_conn=max(1024, threads + 64),
    ) as bouncer:
        yield bouncer


def main() -> None:
    args = parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    thread_counts = [int(t) for t in args.threads.split(",")]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {list(CONFIGS)}")
    if args.lane_queue == "both":
        # Each twin right after its base: the two sides alternate phase by phase.
        configs = [
            c for base in configs for c in (base, base + POOLQ) if kind_of(c) in OURS or c == base
        ]
    when = h.stamp()
    runs: dict[int, dict[str, Any]] = {}
    with h.postgres() as (_admin, dsn):
        q_ms, q_idle_ms = prepare_data(dsn, args.work_ms / 1000)
        params = {
            "command": h.command("benchmarks.paired"),
            "threads T": thread_counts,
            **workload_params(args, q_ms, q_idle_ms),
            "measured per T": f"{args.seconds:g} s in phases of {args.phase:g} s",
            "phase start": args.start,
            "configurations (rotation order)": {
                k: h.KINDS[kind_of(k)] + (" [pool's own queue]" if k.endswith(POOLQ) else "")
                for k in configs
            },
            "lane queue": args.lane_queue,
            **conditions_params(args, dsn),
        }
        h.print_params("paired: configurations alternating in one process", params)
        for threads in thread_counts:
            with bouncer_for(configs, dsn, args, threads) as bouncer:
                cfg = {
                    "configs": configs,
                    "dsns": {
                        k: bouncer.dsn() if k == "pgbouncer" and bouncer else dsn for k in configs
                    },
                    "bouncer_pid": bouncer.process.pid if bouncer and bouncer.process else None,
                    "threads": threads,
                    "pool_size": args.pool_size,
                    "pool_timeout": args.pool_timeout,
                    "work_ms": args.work_ms,
                    "seconds": args.seconds,
                    "phase": args.phase,
                    "warmup": args.warmup,
                    "start": args.start,
                    "switch_interval": args.switch_interval,
                    "lane_queue": args.lane_queue,
                }
                t0 = time.monotonic()
                budget = args.seconds + args.warmup * len(configs) + args.pool_timeout + 90
                runs[threads] = h.run_child("benchmarks.paired", cfg, budget)
                print(f"T={threads}: done in {time.monotonic() - t0:.1f} s", flush=True)
    report(runs, configs, args, q_ms)
    path = h.write_json("paired", {"params": params, "runs": runs}, when)
    print(f"\nRaw figures: {path}")


def report(
    runs: dict[int, dict[str, Any]], configs: list[str], args: argparse.Namespace, q_ms: float
) -> None:
    print("\n### Side by side (configurations alternating in one process)\n")
    rows = []
    for threads, run in runs.items():
        ideal = threads / ((args.work_ms + 2 * q_ms) / 1000)
        results = run["configs"]
        held = results.get("held")
        for kind in configs:
            r = results[kind]
            proxy = r["proxy_cpu_us_per_request"] if kind == "pgbouncer" else None
            rows.append(
                [
                    threads,
                    kind,
                    f"{r['rps']:.1f}",
                    f"{r['rps'] / ideal:.3f}",
                    r["timeouts"],
                    r["errors"],
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    f"{r['cpu_us_per_request']:.0f}"
                    + (f" (+{proxy:.0f} proxy)" if proxy is not None else ""),
                    f"{r['cpu_us_per_request'] / held['cpu_us_per_request']:.2f}"
                    if held
                    else "n/a",
                    f"{r['mean_drain_ms']:.0f}",
                    r["ok"],
                ]
            )
    headers = [
        "T",
        "config",
        "req/s",
        "of ideal",
        "timeouts",
        "errors",
        "p50 ms",
        "p99 ms",
        "client CPU µs/req",
        "CPU / held",
        "drain ms",
        "requests",
    ]
    print(h.markdown_table(headers, rows))
    for kind in configs:
        if kind_of(kind) not in OURS:
            continue
        for threads, run in runs.items():
            real = run["configs"][kind]
            if real.get("borrows"):
                print(
                    f"\nT={threads}, {kind}: {real['borrows']} borrows; "
                    f"{real['lane_queued']} waited in the supply's queue for a release; the "
                    f"pool got {real['pool_requests']} requests, {real['pool_queued']} of which "
                    "queued there (the others took a parked connection; QueuePool counts none)"
                )
    print(
        "\n(drain = from a phase's end until every thread finished its request in flight, "
        "mean per phase; req/s counts the requests started during the phases)"
    )
    twins = [k for k in configs if k.endswith(POOLQ)]

    def failed(r: dict[str, Any]) -> int:
        return int(r["timeouts"] + r["errors"])

    if twins:
        print("\n### Lane queue: supply's queue vs the pool's own queue, same minutes\n")
        rows = []
        for threads, run in runs.items():
            for twin in twins:
                lane, pool = run["configs"][kind_of(twin)], run["configs"][twin]
                rows.append(
                    [
                        threads,
                        kind_of(twin),
                        f"{lane['rps']:.1f} / {pool['rps']:.1f}",
                        f"{lane['rps'] / pool['rps']:.3f}",
                        f"{lane['p50_ms']:.1f} / {pool['p50_ms']:.1f}",
                        f"{lane['p99_ms']:.1f} / {pool['p99_ms']:.1f}",
                        f"{lane['cpu_us_per_request']:.0f} / {pool['cpu_us_per_request']:.0f}",
                        f"{lane['cpu_us_per_request'] / pool['cpu_us_per_request']:.3f}",
                        f"{failed(lane)} / {failed(pool)}",
                    ]
                )
        headers = [
            "T",
            "engine",
            "req/s lane / pool",
            "req/s ratio",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "CPU ratio",
            "failed",
        ]
        print(h.markdown_table(headers, rows))
    if "real" in configs and "pgbouncer" in configs:
        print("\n### This engine against PgBouncer, same minutes\n")
        rows = []
        for threads, run in runs.items():
            real, bouncer = run["configs"]["real"], run["configs"]["pgbouncer"]
            rows.append(
                [
                    threads,
                    f"{real['rps'] / bouncer['rps']:.3f}",
                    f"{real['p99_ms']:.1f} vs {bouncer['p99_ms']:.1f}",
                    f"{real['cpu_us_per_request']:.0f} vs "
                    f"{bouncer['cpu_us_per_request'] + bouncer['proxy_cpu_us_per_request']:.0f}",
                ]
            )
        headers = ["T", "req/s ratio", "p99 ms (real vs PgBouncer)", "CPU µs/req incl. proxy"]
        print(h.markdown_table(headers, rows))


if __name__ == "__main__":
    main()
