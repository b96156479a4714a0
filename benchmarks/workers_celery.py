"""Celery rows of the workers benchmark: a real worker, stock pool vs this engine.

Each row starts Redis and ``celery -A celeryproj worker`` on the example
project (``integrations/celery``), sends ``tasks`` tasks at once, each one
query -> ``work_ms`` of non-database work -> query, and reports:

- ``seconds``: first task start to last task end (worker clocks);
- ``throughput``: tasks per second over that span;
- ``ideal``: ``concurrency / work_ms`` tasks per second, every slot busy with
  the non-database work only; ``ratio`` = throughput / ideal;
- ``peak_connections``: most sessions of the worker seen in
  ``pg_stat_activity`` (sampled every 10 ms);
- ``errors`` (failed tasks) and ``pool_timeouts`` (among them);
- ``backends``: distinct server backends the tasks' queries ran on (a pool
  that lives across tasks reuses a few; one closed at every task boundary
  opens new ones).

``engine="stock"`` is Django's ``django.db.backends.postgresql`` with
``OPTIONS["pool"]`` and Celery's Django fixup as shipped; ``engine="real"`` is
``django_pg_real_pool`` with ``django_pg_real_pool.celery.install(app)``. Both
use ``min_size=1``, ``max_size`` and a 10 s pool timeout.

Run alone: ``python -m benchmarks.workers_celery`` (a throwaway PostgreSQL
unless ``DJANGO_PG_REAL_POOL_TEST_DSN`` is set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from benchmarks import _workers
from integrations.celery.harness import WorkerConfig, client, run_load, send, start_worker
from tests.support.pgserver import server_dsn
from tests.support.redisserver import RedisServer


def run_row(
    *,
    engine: str,
    dsn: str,
    pool: str = "threads",
    tasks: int = 400,
    concurrency: int = 16,
    max_size: int = 4,
    work_ms: int = 50,
) -> dict[str, float]:
    """One Celery row: ``engine`` is "stock" or "real", ``pool`` "threads" or "prefork"."""
    _workers.check_engine(engine)
    if pool not in ("threads", "prefork"):
        raise ValueError(f"pool must be 'threads' or 'prefork', not {pool!r}")
    with RedisServer() as redis_server:
        config = WorkerConfig(
            pool=pool,
            concurrency=concurrency,
            dsn=dsn,
            broker_url=redis_server.url,
            app_name=f"pgrp-bench-celery-{engine}-{pool}-{os.getpid()}",
            engine=engine,
            max_size=max_size,
        )
        worker = start_worker(config)
        try:
            app = client(redis_server.url)
            try:
                # Every slot once, so pools and children exist before timing.
                warmup = [send(app, config.queue, "load", 0) for _ in range(concurrency)]
                for result in warmup:
                    result.get(timeout=120, propagate=False)
                load = run_load(app, config, tasks=tasks, work_ms=work_ms, timeout=600)
            finally:
                app.close()
        finally:
            worker.stop()
    throughput = load.tasks / load.seconds if load.seconds else 0.0
    ideal = concurrency / (work_ms / 1000)
    return {
        "tasks": float(load.tasks),
        "seconds": load.seconds,
        "throughput": throughput,
        "ideal": ideal,
        "ratio": throughput / ideal,
        "peak_connections": float(load.peak_connections),
        "errors": float(load.errors),
        "pool_timeouts": float(load.pool_timeouts),
        "backends": float(len(load.backend_pids)),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| pool | engine | tasks | seconds | tasks/s | ideal | ratio | peak conns | errors "
        "| pool timeouts | backends |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['pool']} -c {row['concurrency']} | {row['engine']} | {row['tasks']:.0f} "
            f"| {row['seconds']:.2f} | {row['throughput']:.1f} | {row['ideal']:.0f} "
            f"| {row['ratio']:.2f} | {row['peak_connections']:.0f} | {row['errors']:.0f} "
            f"| {row['pool_timeouts']:.0f} | {row['backends']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--work-ms", type=int, default=50)
    parser.add_argument("--max-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16, help="-P threads concurrency")
    parser.add_argument("--children", type=int, default=2, help="-P prefork concurrency")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    print(
        f"Celery worker benchmark: {args.tasks} tasks of query -> {args.work_ms} ms -> query, "
        f"pool max_size={args.max_size}, Redis broker, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with server_dsn() as (dsn, _server):
        for pool, concurrency in (("threads", args.threads), ("prefork", args.children)):
            for engine in ("stock", "real"):
                row = run_row(
                    engine=engine,
                    dsn=dsn,
                    pool=pool,
                    tasks=args.tasks,
                    concurrency=concurrency,
                    max_size=args.max_size,
                    work_ms=args.work_ms,
                )
                rows.append({"pool": pool, "engine": engine, "concurrency": concurrency, **row})
                print(f"  done: {pool} -c {concurrency}, {engine}", file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
