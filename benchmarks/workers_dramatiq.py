"""dramatiq workers: many threads on a small pool, Django's stock pool vs this engine.

A real ``dramatiq`` worker (one process, ``--threads``) runs the integration
project in ``integrations/dramatiq`` against a scratch database and a
throwaway Redis. Each message queries, works ``--work-ms`` without the
database, and queries again; django-dramatiq's ``AdminMiddleware`` and
``DbConnectionsMiddleware`` are installed for both engines (the stock engine
needs the latter to give connections back at all).

    python -m benchmarks.workers_dramatiq [--tasks 400] [--threads 16] [--max-size 4]

``ideal`` is the throughput of ``threads`` threads doing nothing but the work
(``threads / work``); ``ratio`` is throughput / ideal. ``peak connections``
is sampled from ``pg_stat_activity``; ``concurrent work`` is the most messages
seen inside their work at the same instant (above the pool size only when
connections are not held during the work).
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import _harness, _workers
from integrations.dramatiq import harness
from tests.support.pgserver import server_dsn


def run_row(
    *,
    engine: str,
    dsn: str,
    tasks: int = 400,
    threads: int = 16,
    max_size: int = 4,
    work_ms: int = 50,
) -> dict[str, float]:
    """One run on the server of ``dsn`` (in a scratch database of its own).

    ``engine``: ``"stock"`` (``django.db.backends.postgresql`` with
    ``OPTIONS["pool"]``) or ``"real"`` (``django_pg_real_pool``), both with
    ``max_size`` connections and a 10 s pool timeout.
    """
    _workers.check_engine(engine)
    with harness.project(dsn, f"pgrp_bench_dramatiq_{engine}") as proj:
        worker = proj.worker(
            threads=threads, engine=engine, max_size=max_size, DQ_DB_CONNECTIONS_MIDDLEWARE="1"
        )
        try:
            # Django set up and the pool open in the worker: not part of the figures.
            warm = proj.outcome(proj.send("load", 0))
            if not warm.ok:
                raise RuntimeError(f"the worker cannot run a message: {warm}")
            figures = harness.measure_load(proj, tasks=tasks, threads=threads, work_ms=work_ms)
        finally:
            worker.stop()
    return _workers.row(figures)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--max-size", type=int, default=4)
    parser.add_argument("--work-ms", type=int, default=50)
    parser.add_argument(
        "--no-large-stock",
        action="store_true",
        help="skip the stock pool sized for every thread (max_size = threads)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    configs: list[tuple[str, str, int]] = [
        ("stock", "stock pool", args.max_size),
        ("real", "django_pg_real_pool", args.max_size),
    ]
    if not args.no_large_stock:
        configs.append(("stock", "stock pool sized for the threads", args.threads))
    with server_dsn() as (dsn, _server):
        when = _harness.stamp()
        params = {
            "tasks": args.tasks,
            "threads": f"{args.threads} (one worker process)",
            "work per message": f"query, {args.work_ms} ms without the database, query",
            "pool timeout": "10 s",
            **_harness.machine(dsn),
        }
        _harness.print_params("dramatiq workers", params)
        rows: list[dict[str, Any]] = []
        for engine, label, size in configs:
            row = run_row(
                engine=engine,
                dsn=dsn,
                tasks=args.tasks,
                threads=args.threads,
                max_size=size,
                work_ms=args.work_ms,
            )
            rows.append({"configuration": label, "max_size": size, **row})
    headers = [
        "configuration",
        "max_size",
        "seconds",
        "msg/s",
        "ideal msg/s",
        "ratio",
        "peak connections",
        "concurrent work",
        "errors",
        "pool timeouts",
    ]
    table = [
        [
            r["configuration"],
            r["max_size"],
            f"{r['seconds']:.2f}",
            f"{r['throughput']:.0f}",
            f"{r['ideal']:.0f}",
            f"{r['ratio']:.2f}",
            int(r["peak_connections"]),
            int(r["peak_concurrent_work"]),
            int(r["errors"]),
            int(r["pool_timeouts"]),
        ]
        for r in rows
    ]
    print(_harness.markdown_table(headers, table))
    path = _harness.write_json("workers_dramatiq", {"params": params, "rows": rows}, when)
    print(f"\n(raw figures: {path})")


if __name__ == "__main__":
    main()
