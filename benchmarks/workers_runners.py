"""huey, RQ and Django Tasks workers: Django's stock pool vs this engine.

Rows for ``benchmarks/workers.py`` (``run_row()``), from the e2e projects in
``integrations/huey``, ``integrations/rq`` and ``integrations/djtasks``:
each task queries, works ``work_ms`` without the database, and queries again.

* ``huey``: one ``run_huey`` consumer, ``-k thread`` or ``-k process`` with
  ``concurrency`` workers (the stock engine runs the tasks as django-huey's
  ``db_task``, which closes connections around each task; without it a
  thread keeps its connection for good);
* ``rq``: ``concurrency`` ``rqworker`` processes, forking ``Worker`` or
  ``SimpleWorker`` (one job at a time per process);
* ``djtasks``: ``concurrency`` ``db_worker`` processes (one task at a time each).

    python -m benchmarks.workers_runners --runner huey --kind thread [--tasks 400]
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from benchmarks import _harness, _workers
from tests.support.pgserver import server_dsn

RUNNERS = {"huey": ("thread", "process"), "rq": ("fork", "simple"), "djtasks": ("db_worker",)}


def run_row(
    *,
    runner: str,
    kind: str,
    engine: str,
    dsn: str,
    tasks: int = 400,
    concurrency: int = 16,
    max_size: int = 4,
    work_ms: int = 50,
) -> dict[str, float]:
    """One run on the server of ``dsn`` (in a scratch database of its own)."""
    _workers.check_engine(engine)
    if kind not in RUNNERS.get(runner, ()):
        raise ValueError(f"runner/kind {runner}/{kind} unknown; known: {RUNNERS}")
    name = f"pgrp_bench_{runner}_{kind}_{engine}"
    with contextlib.ExitStack() as stack:
        if runner == "huey":
            from integrations.huey import harness as hq

            harness: Any = hq
            proj: Any = stack.enter_context(hq.project(dsn, name))
            workers = [
                proj.consumer(workers=concurrency, kind=kind, engine=engine, max_size=max_size)
            ]
        elif runner == "rq":
            from integrations.rq import harness as rqh

            harness = rqh
            proj = stack.enter_context(rqh.project(dsn, name))
            worker_class = rqh.FORKING if kind == "fork" else rqh.SIMPLE
            if engine == "stock":
                worker_class = "rq.worker.Worker" if kind == "fork" else "rq.worker.SimpleWorker"
            workers = [
                proj.worker(worker_class=worker_class, engine=engine, max_size=max_size)
                for _ in range(concurrency)
            ]
        else:
            from integrations.djtasks import harness as tkh

            harness = tkh
            proj = stack.enter_context(tkh.project(dsn, name))
            workers = [proj.worker(engine=engine, max_size=max_size) for _ in range(concurrency)]
        for worker in workers:
            stack.callback(worker.stop)
        # Django set up and the pools open in the workers: not part of the figures.
        harness.measure_load(proj, tasks=2 * concurrency, workers=concurrency, work_ms=0)
        figures = harness.measure_load(proj, tasks=tasks, workers=concurrency, work_ms=work_ms)
    return _workers.row(figures)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="huey")
    parser.add_argument("--kind", default=None, help="worker kind (default: the runner's first)")
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-size", type=int, default=4)
    parser.add_argument("--work-ms", type=int, default=50)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    kind = args.kind or RUNNERS[args.runner][0]
    with server_dsn() as (dsn, _server):
        params = {
            "runner": f"{args.runner} ({kind}), concurrency {args.concurrency}",
            "tasks": args.tasks,
            "work per task": f"query, {args.work_ms} ms without the database, query",
            "pool": f"max_size {args.max_size}, timeout 10 s",
            **_harness.machine(dsn),
        }
        _harness.print_params(f"{args.runner} workers", params)
        rows = [
            {
                "engine": engine,
                **run_row(
                    runner=args.runner,
                    kind=kind,
                    engine=engine,
                    dsn=dsn,
                    tasks=args.tasks,
                    concurrency=args.concurrency,
                    max_size=args.max_size,
                    work_ms=args.work_ms,
                ),
            }
            for engine in ("stock", "real")
        ]
    headers = ["engine", "seconds", "tasks/s", "ideal", "of ideal", "peak conns", "errors"]
    table = [
        [
            r["engine"],
            f"{r['seconds']:.2f}",
            f"{r['throughput']:.1f}",
            f"{r['ideal']:.0f}",
            f"{r['ratio']:.2f}",
            int(r["peak_connections"]),
            int(r["errors"]),
        ]
        for r in rows
    ]
    print(_harness.markdown_table(headers, table))


if __name__ == "__main__":
    main()
