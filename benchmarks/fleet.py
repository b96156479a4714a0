"""Fleet: M processes x T threads against one PostgreSQL with few connections.

Every process runs webload's request (a query, ``--work-ms`` of other work, a
query, ``request_finished``) in T threads; all M processes measure the same
window (a start time given to each). The server is a throwaway one whose
``max_connections`` is ``--max-connections``: low enough that the fleet's
connections matter. Configurations (``--configs``):

* stock: Django's native pool per process (max_size P): M x P server connections;
* real: this engine per process (max_size P): M x P server connections;
* pgbouncer: the stock engine with a persistent connection per thread to one
  PgBouncer in transaction mode (``--bouncer-pool`` server connections);
* realbouncer: this engine per process (P client connections each) behind the
  same PgBouncer, with the settings the README gives for it.

Reported per fleet size and configuration: throughput, of ideal
(M x T / (W + 2q)), timeouts, other errors, connection attempts the server
refused ("too many clients", from psycopg_pool's log), peak server connections
(``pg_stat_activity``), client CPU per request (all M processes; PgBouncer's
own apart). ``--advise`` then sizes this engine's pool from the telemetry of
the ``real`` run of the first fleet size (``_advise.py``, the maths of
``pool_status --advise``) and runs it again at the advised size, to compare
the mean wait it measures with the target.

Usage::

    python -m benchmarks.fleet [--fleets 8x16,16x32] [--seconds 4] [--advise]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import subprocess
import sys
import threading
import time
from time import process_time
from typing import Any

from benchmarks import _harness as h
from benchmarks.webload import OK, TIMEOUT, one_request, prepare_data
from tests.support.pgbouncer import PgBouncer, find_pgbouncer
from tests.support.pgserver import PostgresServer

APPLICATION = "pgrp-fleet"
CONFIGS = {
    "stock": "Django's native pool per process",
    "real": "django_pg_real_pool per process",
    "pgbouncer": "PgBouncer (transaction mode), a held client connection per thread",
    "realbouncer": "django_pg_real_pool per process behind PgBouncer",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleets", default="8x16,16x32", help="comma-separated MxT")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"from {list(CONFIGS)}")
    parser.add_argument("--max-connections", type=int, default=48, help="server max_connections")
    parser.add_argument("--pool-size", type=int, default=4, help="P: max_size per process")
    parser.add_argument("--bouncer-pool", type=int, default=16, help="PgBouncer server conns")
    parser.add_argument("--pool-timeout", type=float, default=5.0, help="pool timeout, seconds")
    parser.add_argument("--work-ms", type=float, default=50.0, help="W: non-database work, ms")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before the window")
    parser.add_argument("--advise", action="store_true", help="validate pool_status --advise")
    parser.add_argument("--target-wait-ms", type=float, default=1.0, help="advice target")
    parser.add_argument("--no-install", action="store_true", help="never apt-get pgbouncer")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- one process of the fleet ------------------------------------------------------


class _RefusedConnects(logging.Handler):
    """Counts psycopg_pool's failed connection attempts the server refused."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "too many clients" in record.getMessage():
            self.count += 1


def entry(kind: str, dsn: str, cfg: dict[str, Any]) -> dict[str, Any]:
    base = {"real": "real", "realbouncer": "real", "stock": "stock", "pgbouncer": "pgbouncer"}
    settings = h.database_entry(
        base[kind],
        dsn,
        pool_size=cfg["pool_size"],
        min_size=1,
        timeout=cfg["pool_timeout"],
        application=APPLICATION,
    )
    if kind == "realbouncer":
        settings["DISABLE_SERVER_SIDE_CURSORS"] = True
        settings["OPTIONS"]["real_pool"] = {"session_state": "error"}
    return settings


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    refused = _RefusedConnects()
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.addHandler(refused)
    pool_log.propagate = False
    h.configure_django({"default": entry(cfg["kind"], cfg["dsn"], cfg)})
    from django.db import connections

    from django_pg_real_pool import telemetry

    stop = threading.Event()
    tallies = [[0, 0, 0] for _ in range(cfg["threads"])]

    def worker(idx: int) -> None:
        rnd = random.Random(idx * 7919 + cfg["index"])
        tally = tallies[idx]
        wrapper = connections["default"]
        try:
            while not stop.is_set():
                tally[one_request(wrapper, rnd, cfg["work_ms"] / 1000)] += 1
        finally:
            wrapper.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(cfg["threads"])]
    for thread in threads:
        thread.start()
    # The fleet's common window: every process starts counting at the same time.
    time.sleep(max(0.0, cfg["start_at"] - time.time()))
    counted0 = [sum(t[i] for t in tallies) for i in range(3)]
    cpu0, snap0, t0 = process_time(), telemetry.snapshot().get("default"), time.time()
    time.sleep(max(0.0, cfg["start_at"] + cfg["seconds"] - time.time()))
    cpu1, snap1, t1 = process_time(), telemetry.snapshot().get("default"), time.time()
    counted = [sum(t[i] for t in tallies) - counted0[i] for i in range(3)]
    stop.set()
    for thread in threads:
        thread.join()
    h.close_django_pools()
    return {
        "ok": counted[OK],
        "timeouts": counted[TIMEOUT],
        "errors": counted[2],
        "cpu_s": cpu1 - cpu0,
        "refused_connects": refused.count,
        "window_s": t1 - t0,
        "telemetry": [snap0, snap1] if cfg["kind"] in ("real", "realbouncer") else None,
    }


# -- the fleet ---------------------------------------------------------------------


def run_fleet(
    kind: str, processes: int, threads: int, args: argparse.Namespace, dsn: str, **over: Any
) -> dict[str, Any]:
    """M child processes of one configuration; their results summed."""
    startup = 2.0 + 0.35 * processes  # Django imports on 2 cores
    cfg = {
        "kind": kind,
        "dsn": dsn,
        "threads": threads,
        "pool_size": over.get("pool_size", args.pool_size),
        "pool_timeout": args.pool_timeout,
        "work_ms": args.work_ms,
        "seconds": args.seconds,
        "start_at": time.time() + startup + args.warmup,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet", "--child", json.dumps({**cfg, "index": i})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i in range(processes)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=startup + args.warmup + args.seconds + 120)
            line = next((x for x in reversed(out.splitlines()) if x.startswith("RESULT ")), None)
            if line is None:
                raise RuntimeError(f"a {kind} process failed:\n{err[-3000:]}")
            results.append(json.loads(line[len("RESULT ") :]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    total: dict[str, Any] = {
        key: sum(r[key] for r in results)
        for key in ("ok", "timeouts", "errors", "cpu_s", "refused_connects")
    }
    seconds = sum(r["window_s"] for r in results) / len(results)
    total["rps"] = total["ok"] / seconds
    total["cpu_us_per_request"] = total["cpu_s"] / max(1, total["ok"] + total["errors"]) * 1e6
    total["telemetry"] = [r["telemetry"] for r in results if r["telemetry"]]
    return total


def run_one(
    kind: str,
    fleet: tuple[int, int],
    args: argparse.Namespace,
    dsn: str,
    sampler: h.ServerSampler,
    bouncer_bin: str | None,
    **over: Any,
) -> dict[str, Any]:
    processes, threads = fleet
    sampler.wait_for_no_sessions()
    with contextlib.ExitStack() as stack:
        bouncer = None
        target = dsn
        if kind in ("pgbouncer", "realbouncer"):
            if bouncer_bin is None:
                return {"unavailable": True}
            bouncer = PgBouncer(
                bouncer_bin,
                dsn,
                pool_size=args.bouncer_pool,
                wait_timeout=args.pool_timeout,
                max_client_conn=max(1024, processes * threads + 64),
            )
            stack.enter_context(bouncer)
            target = bouncer.dsn()
        t0 = sampler.now()
        proxy0 = bouncer.cpu_seconds() if bouncer else 0.0
        result = run_fleet(kind, processes, threads, args, target, **over)
        if bouncer is not None:
            used = bouncer.cpu_seconds() - proxy0
            result["proxy_cpu_us_per_request"] = used / max(1, result["ok"]) * 1e6
        result["peak_server_connections"] = sampler.peak(since=t0)
    return result


def main() -> None:
    args = parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    fleets = [tuple(int(x) for x in f.split("x")) for f in args.fleets.split(",")]
    configs = [c for c in args.configs.split(",") if c]
    bouncer_bin, why = (None, "")
    if {"pgbouncer", "realbouncer"} & set(configs):
        bouncer_bin, why = find_pgbouncer(install=not args.no_install)
    when = h.stamp()
    results: dict[str, Any] = {}
    server = PostgresServer(settings={"max_connections": str(args.max_connections)}).start()
    try:
        admin = server.dsn()
        with psycopg_connect(admin) as conn:
            conn.execute(f'CREATE DATABASE "{h.BENCH_DB}"')
        dsn = h.with_dbname(admin, h.BENCH_DB)
        q_ms, _idle = prepare_data(dsn, args.work_ms / 1000)
        params = {
            "command": h.command("benchmarks.fleet"),
            "fleets M x T": args.fleets,
            "server max_connections": args.max_connections,
            "pool max_size P per process": args.pool_size,
            "PgBouncer server connections": args.bouncer_pool,
            "work W": f"{args.work_ms:g} ms",
            "query time q (direct, median)": f"{q_ms:.3f} ms",
            "window": f"{args.seconds:g} s after {args.warmup:g} s warm-up (after start-up)",
            "configurations": {k: CONFIGS[k] for k in configs},
            **h.machine(dsn),
        }
        if bouncer_bin is None and why:
            params["pgbouncer"] = f"unavailable: {why}"
        h.print_params("fleet: M processes x T threads, one PostgreSQL", params)
        with h.ServerSampler(admin, h.BENCH_DB) as sampler:
            for fleet in fleets:
                for kind in configs:
                    r = run_one(kind, fleet, args, dsn, sampler, bouncer_bin)
                    results[f"{kind}/{fleet[0]}x{fleet[1]}"] = r
                    if not r.get("unavailable"):
                        _progress(kind, fleet, r)
            advice = (
                validate_advice(args, fleets[0], dsn, sampler, results) if args.advise else None
            )
    finally:
        server.stop()
    print()
    print(table(results, fleets, configs, args, q_ms))
    if advice is not None:
        print()
        print(advice["text"])
    path = h.write_json("fleet", {"params": params, "results": results, "advice": advice}, when)
    print(f"\nRaw figures: {path}")


def psycopg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _progress(kind: str, fleet: tuple[int, int], r: dict[str, Any]) -> None:
    print(
        f"{fleet[0]}x{fleet[1]:<4} {kind:<12} {r['rps']:8.1f} req/s  timeouts {r['timeouts']:<5}"
        f" errors {r['errors']:<5} refused {r['refused_connects']:<4}"
        f" peak conns {r['peak_server_connections']}",
        flush=True,
    )


def table(
    results: dict[str, Any],
    fleets: list[tuple[int, ...]],
    configs: list[str],
    args: argparse.Namespace,
    q_ms: float,
) -> str:
    rows = []
    for m, t in fleets:
        ideal = m * t / (args.work_ms / 1000 + 2 * q_ms / 1000)
        for kind in configs:
            r = results[f"{kind}/{m}x{t}"]
            if r.get("unavailable"):
                rows.append([f"{m}x{t}", kind, "unavailable", "", "", "", "", "", ""])
                continue
            cpu = f"{r['cpu_us_per_request']:.0f}"
            if "proxy_cpu_us_per_request" in r:
                cpu += f" (+{r['proxy_cpu_us_per_request']:.0f} in PgBouncer)"
            rows.append(
                [
                    f"{m}x{t}",
                    CONFIGS[kind],
                    f"{r['rps']:.1f}",
                    f"{r['rps'] / ideal:.3f}",
                    r["timeouts"],
                    r["errors"],
                    r["refused_connects"],
                    r["peak_server_connections"],
                    cpu,
                ]
            )
    headers = [
        "M x T",
        "config",
        "req/s",
        "of ideal",
        "timeouts",
        "errors",
        "refused connects (too many clients)",
        "peak server conns",
        "client CPU µs/req",
    ]
    return h.markdown_table(headers, rows)


def validate_advice(
    args: argparse.Namespace,
    fleet: tuple[int, int],
    dsn: str,
    sampler: h.ServerSampler,
    results: dict[str, Any],
) -> dict[str, Any]:
    """Advise from the ``real`` run's telemetry, run again at the advised size."""
    from django_pg_real_pool import _advise

    def advice_of(run: dict[str, Any]) -> _advise.Advice:
        measures = [
            _advise.measure(before, after, args.seconds) for before, after in run["telemetry"]
        ]
        return _advise.advise(
            _advise.combine(measures), processes=fleet[0], target_wait=args.target_wait_ms / 1000
        )

    base = results.get(f"real/{fleet[0]}x{fleet[1]}") or run_one(
        "real", fleet, args, dsn, sampler, None
    )
    first = advice_of(base)
    rerun = run_one("real", fleet, args, dsn, sampler, None, pool_size=first.max_size)
    per_process = [
        _advise.measure(before, after, args.seconds) for before, after in rerun["telemetry"]
    ]
    waits = [m.wait_sum / m.borrows * 1000 for m in per_process if m.borrows]
    second = advice_of(rerun)
    text = "\n".join(
        [
            f"Advice from the real run at {fleet[0]}x{fleet[1]}, P={args.pool_size}:",
            _advise.render("default", first),
            "",
            f"Run again at the advised max_size={first.max_size}: {rerun['rps']:.1f} req/s, "
            f"{rerun['timeouts']} timeouts, peak server conns {rerun['peak_server_connections']}; "
            f"measured mean wait per borrow {second.measured_wait * 1000:.3f} ms "
            f"(processes: {min(waits):.3f}-{max(waits):.3f} ms) against the target "
            f"{args.target_wait_ms:g} ms and {first.predicted_wait * 1000:.3f} ms predicted",
        ]
    )
    return {
        "text": text,
        "advice": first.as_dict(),
        "rerun": {k: v for k, v in rerun.items() if k != "telemetry"},
        "rerun_waits_ms": waits,
    }


if __name__ == "__main__":
    main()
