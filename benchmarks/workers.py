"""Task workers (dramatiq, Celery, huey, RQ, Django Tasks): stock pool vs this engine.

Each task is one query, ``--work-ms`` of non-database work, one query, on a
worker with more threads (or children) than pooled connections. The rows come
from ``benchmarks/workers_dramatiq.py``, ``benchmarks/workers_celery.py`` and
``benchmarks/workers_runners.py``
(``run_row()``: they start Redis and the real worker, send the tasks, sample
``pg_stat_activity``); this script runs them on one server and tabulates them.

ideal = concurrency / W tasks per second (every slot busy with the
non-database work only); a row that cannot run says why instead.

Usage::

    python -m benchmarks.workers [--tasks 400] [--threads 16] [--children 2] [--max-size 4]
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks import _harness as h
from benchmarks import _workers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400, help="tasks per row")
    parser.add_argument("--work-ms", type=int, default=50, help="non-database work per task")
    parser.add_argument("--max-size", type=int, default=4, help="pool max_size (per process)")
    parser.add_argument("--threads", type=int, default=16, help="dramatiq / celery -P threads")
    parser.add_argument(
        "--children",
        type=int,
        default=2,
        help="celery -P prefork children, huey -k process workers, rq / db_worker processes",
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help="which workloads",
    )
    return parser.parse_args()


#: name -> (module, run_row keyword arguments, "threads" or "children": its width).
WORKLOADS: dict[str, tuple[str, dict[str, Any], str]] = {
    "dramatiq": ("benchmarks.workers_dramatiq", {}, "threads"),
    "celery-threads": ("benchmarks.workers_celery", {"pool": "threads"}, "threads"),
    "celery-prefork": ("benchmarks.workers_celery", {"pool": "prefork"}, "children"),
    "huey-threads": ("benchmarks.workers_runners", {"runner": "huey", "kind": "thread"}, "threads"),
    "huey-process": (
        "benchmarks.workers_runners",
        {"runner": "huey", "kind": "process"},
        "children",
    ),
    "rq-fork": ("benchmarks.workers_runners", {"runner": "rq", "kind": "fork"}, "children"),
    "rq-simple": ("benchmarks.workers_runners", {"runner": "rq", "kind": "simple"}, "children"),
    "django-tasks-db": (
        "benchmarks.workers_runners",
        {"runner": "djtasks", "kind": "db_worker"},
        "children",
    ),
}


def workloads(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, Any], int]]:
    """name -> (module, run_row keyword arguments, concurrency)."""
    table = {}
    for name, (module, extra, width) in WORKLOADS.items():
        concurrency = args.threads if width == "threads" else args.children
        # workers_dramatiq's run_row calls its concurrency "threads".
        key = "threads" if module == "benchmarks.workers_dramatiq" else "concurrency"
        table[name] = (module, {**extra, key: concurrency}, concurrency)
    return table


def load_run_row(module: str) -> tuple[Callable[..., dict[str, Any]] | None, str]:
    """The module's ``run_row``, or None and why it is unavailable."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            path = module.replace(".", "/") + ".py"
            return None, f"{path} does not exist yet"
        return None, f"{module} cannot be imported: {exc}"
    except Exception as exc:
        return None, f"{module} cannot be imported: {exc!r}"
    run_row = getattr(mod, "run_row", None)
    if run_row is None:
        return None, f"{module} has no run_row()"
    return run_row, ""


def main() -> None:
    args = parse_args()
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    table = workloads(args)
    for name in chosen:
        if name not in table:
            raise SystemExit(f"unknown workload {name!r}; known: {sorted(table)}")
    when = h.stamp()
    rows: list[dict[str, Any]] = []
    with h.postgres() as (admin, dsn):
        params = {
            "command": h.command("benchmarks.workers"),
            "tasks per row": args.tasks,
            "task": f"query -> {args.work_ms} ms of non-database work -> query",
            "pool max_size (per worker process)": args.max_size,
            "threads (dramatiq, celery -P threads, huey -k thread)": args.threads,
            "processes (celery -P prefork, huey -k process, rq, db_worker)": args.children,
            "load average at start": h.load_average(),
            **h.machine(dsn),
        }
        h.print_params("workers: task queues on a small pool", params)
        for name in chosen:
            module, extra, concurrency = table[name]
            run_row, reason = load_run_row(module)
            for engine in _workers.ENGINES:
                row: dict[str, Any] = {
                    "workload": name,
                    "engine": engine,
                    "concurrency": concurrency,
                }
                if run_row is None:
                    row["unavailable"] = reason
                    print(f"{name:<15} {engine:<6} unavailable: {reason}", flush=True)
                    rows.append(row)
                    continue
                t0 = time.monotonic()
                try:
                    row.update(
                        run_row(
                            engine=engine,
                            dsn=admin,
                            tasks=args.tasks,
                            max_size=args.max_size,
                            work_ms=args.work_ms,
                            **extra,
                        )
                    )
                except Exception as exc:
                    traceback.print_exc()
                    row["unavailable"] = f"run_row failed: {exc!r}"[:300]
                rows.append(row)
                status = row.get("unavailable") or f"{row['throughput']:.1f} tasks/s"
                print(
                    f"{name:<15} {engine:<6} {status} ({time.monotonic() - t0:.1f} s)", flush=True
                )
    report(rows)
    path = h.write_json("workers", {"params": params, "rows": rows}, when)
    print(f"\nRaw figures: {path}")
    plot(rows, args, h.png_path("workers", when))


def report(rows: list[dict[str, Any]]) -> None:
    print("\n### Throughput against ideal, server connections\n")
    table = []
    for r in rows:
        if "unavailable" in r:
            table.append([r["workload"], r["engine"], r["concurrency"], *["n/a"] * 8])
            continue
        table.append(
            [
                r["workload"],
                r["engine"],
                r["concurrency"],
                f"{r['tasks']:.0f}",
                f"{r['seconds']:.2f}",
                f"{r['throughput']:.1f}",
                f"{r['ideal']:.0f}",
                f"{r['ratio']:.2f}",
                f"{r['peak_connections']:.0f}",
                f"{r['errors']:.0f}",
                f"{r['pool_timeouts']:.0f}",
            ]
        )
    headers = [
        "workload",
        "engine",
        "concurrency",
        "tasks",
        "seconds",
        "tasks/s",
        "ideal",
        "of ideal",
        "peak server conns",
        "errors",
        "pool timeouts",
    ]
    print(h.markdown_table(headers, table))
    for reason in sorted({r["unavailable"] for r in rows if "unavailable" in r}):
        print(f"\nunavailable: {reason}")
    by_key = {(r["workload"], r["engine"]): r for r in rows if "throughput" in r}
    lines = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        stock, real = by_key.get((workload, "stock")), by_key.get((workload, "real"))
        if stock and real and stock["throughput"] > 0:
            lines.append(
                f"- {workload}: this engine {real['throughput'] / stock['throughput']:.2f}x the "
                f"stock throughput, peak server connections {real['peak_connections']:.0f} vs "
                f"{stock['peak_connections']:.0f}"
            )
    if lines:
        print("\n" + "\n".join(lines))


def plot(rows: list[dict[str, Any]], args: argparse.Namespace, png: Any) -> None:
    done = [r for r in rows if "throughput" in r]
    if not done:
        return
    plt = h.pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"{r['workload']}\n{r['engine']}" for r in done]
    colors = ["tab:orange" if r["engine"] == "stock" else "tab:blue" for r in done]
    left.bar(labels, [r["throughput"] for r in done], color=colors)
    left.scatter(
        labels, [r["ideal"] for r in done], color="black", marker="_", s=400, label="ideal"
    )
    left.set_ylabel("tasks/s")
    left.set_title("Throughput")
    left.legend()
    right.bar(labels, [r["peak_connections"] for r in done], color=colors)
    right.set_ylabel("sessions")
    right.set_title("Peak server connections (pg_stat_activity)")
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"workers: {args.tasks} tasks, W={args.work_ms} ms, pool max_size={args.max_size}")
    h.save_figure(plt, fig, png)


if __name__ == "__main__":
    main()
