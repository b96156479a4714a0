"""Per-query release overhead of this engine against the raw ``psycopg_pool`` floor.

Every loop runs ``SELECT 1`` through a cursor, ``--queries`` times per round,
single-threaded, all in this process, in rotating order over ``--rounds``
rounds; figures are medians over rounds of the time per query (wall time and
process CPU time; CPU time is what load from other processes disturbs least),
and, as a cross-check, differences of each loop's fastest round.

* raw floor = (``getconn()`` -> ``SELECT 1`` -> ``putconn()`` on a
  ``psycopg_pool.ConnectionPool`` in autocommit) - (``SELECT 1`` on one held
  pooled connection): the least any per-query release can cost.
* this engine = (autocommit loop via ``connection.cursor()``) - (the same loop
  inside ``atomic()``, i.e. on a held connection), per engine.
* naive = the stock engine on Django's pool, ``connection.close()`` after each
  query (Django's whole ``connect()`` on every re-borrow) - the same loop inside
  ``atomic()``.

Usage::

    python -m benchmarks.micro [--rounds 30] [--queries 400] [--profile cprofile|pyinstrument]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import timeit
from collections.abc import Callable
from time import perf_counter, process_time
from typing import Any

from benchmarks import _harness as h

SQL = "SELECT 1"
ALIASES = {"default": "real", "realdj": "realdj", "stock": "stock"}

# Statements for the session-state check: what the ORM sends, and candidates.
_T = '"testapp_item"'
CHECKED_SQL = {
    "ORM SELECT": f'SELECT {_T}."id", {_T}."name", {_T}."value" FROM {_T} '
    f'WHERE {_T}."id" = %s LIMIT 21',
    "ORM INSERT": f'INSERT INTO {_T} ("name", "value") VALUES (%s, %s) RETURNING {_T}."id"',
    "ORM UPDATE": f'UPDATE {_T} SET "value" = %s WHERE {_T}."id" = %s',
    "SET LOCAL (candidate, clean)": "SET LOCAL statement_timeout = 1000",
    "SET search_path (session state)": "SET search_path TO tenant_1, public",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds (default 30)")
    parser.add_argument("--queries", type=int, default=400, help="queries per loop and round")
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="also profile this engine's per-query loop and print the hot spots",
    )
    parser.add_argument(
        "--profile-queries", type=int, default=20000, help="queries in the profiled loop"
    )
    parser.add_argument(
        "--telemetry",
        choices=("off", "on"),
        default="off",
        help="register the OpenTelemetry and Prometheus exporters before measuring",
    )
    return parser.parse_args()


Timing = tuple[float, float]


def make_loops(pool: Any) -> dict[str, Callable[[int], Timing]]:
    """name -> loop(n) returning (wall seconds, process CPU seconds) for n queries."""
    from django.db import connections, transaction

    from django_pg_real_pool import pinned, session_context

    def raw_held(n: int) -> Timing:
        conn = pool.getconn()
        try:
            t0, c0 = perf_counter(), process_time()
            for _ in range(n):
                conn.execute(SQL).fetchone()
            return perf_counter() - t0, process_time() - c0
        finally:
            pool.putconn(conn)

    def raw_pool(n: int) -> Timing:
        getconn, putconn = pool.getconn, pool.putconn
        t0, c0 = perf_counter(), process_time()
        for _ in range(n):
            conn = getconn()
            conn.execute(SQL).fetchone()
            putconn(conn)
        return perf_counter() - t0, process_time() - c0

    def django_loop(alias: str, mode: str) -> Callable[[int], Timing]:
        wrapper = connections[alias]

        def run(n: int) -> Timing:
            t0, c0 = perf_counter(), process_time()
            for _ in range(n):
                with wrapper.cursor() as cursor:
                    cursor.execute(SQL)
                    cursor.fetchone()
                if mode == "naive":
                    wrapper.close()
            return perf_counter() - t0, process_time() - c0

        def held(n: int) -> Timing:
            with transaction.atomic(using=alias):
                return run(n)

        def pinned_held(n: int) -> Timing:
            # Held without a transaction: each SELECT is its own transaction on
            # the server, as in the raw floor's held loop.
            with pinned(using=alias):
                return run(n)

        def one_tenant(n: int) -> Timing:
            # Every borrow inside a session_context already carried by the
            # connection: the check at each borrow, no round trip.
            with session_context(alias, settings={"app.tenant_id": "1"}):
                return run(n)

        return {"held": held, "pinned": pinned_held, "tenant": one_tenant}.get(mode, run)

    return {
        "raw_held": raw_held,
        "raw_pool": raw_pool,
        "stock_held": django_loop("stock", "held"),
        "stock_naive": django_loop("stock", "naive"),
        "real_held": django_loop("default", "held"),
        "real_pinned": django_loop("default", "pinned"),
        "real": django_loop("default", "release"),
        "real_tenant": django_loop("default", "tenant"),
        "realdj_held": django_loop("realdj", "held"),
        "realdj": django_loop("realdj", "release"),
    }


LABELS = {
    "raw_held": "raw psycopg: one held pooled connection",
    "raw_pool": "raw psycopg_pool: getconn/SELECT 1/putconn",
    "stock_held": "stock engine + pool, inside atomic() (held)",
    "stock_naive": "stock engine + pool, close() after each query (naive)",
    "real_held": "django_pg_real_pool, inside atomic() (held)",
    "real_pinned": "django_pg_real_pool, inside pinned() (held, autocommit)",
    "real": "django_pg_real_pool, released after each query",
    "real_tenant": "django_pg_real_pool, released, inside session_context (one tenant)",
    "realdj_held": "django_pg_real_pool.dj_db_conn_pool, inside atomic() (held)",
    "realdj": "django_pg_real_pool.dj_db_conn_pool, released after each query",
}


# Each pair: (held, released). Pairs run back to back in every round, so a
# burst of load from elsewhere hits both sides of a difference alike.
PAIRS = (
    ("raw_held", "raw_pool"),
    ("stock_held", "stock_naive"),
    ("real_held", "real"),
    ("real_pinned", "real"),
    ("real", "real_tenant"),
    ("realdj_held", "realdj"),
)


def measure(
    loops: dict[str, Callable[[int], Timing]], rounds: int, n: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """µs per query of each loop, one value per round: (wall, process CPU)."""
    for loop in loops.values():  # warm-up: pools open, caches fill
        loop(max(50, n // 10))
    # What exists now lives for the whole run: keep it out of the collections
    # made between loops, which then take microseconds, not milliseconds.
    gc.collect()
    gc.freeze()
    wall: dict[str, list[float]] = {name: [] for name in loops}
    cpu: dict[str, list[float]] = {name: [] for name in loops}
    for r in range(rounds):
        shift = r % len(PAIRS)
        for pair in PAIRS[shift:] + PAIRS[:shift]:
            for name in pair if r % 2 == 0 else reversed(pair):
                gc.collect()
                seconds, cpu_seconds = loops[name](n)
                wall[name].append(seconds / n * 1e6)
                cpu[name].append(cpu_seconds / n * 1e6)
    return wall, cpu


def session_check_costs() -> dict[str, float]:
    """ns per call of the session-state check, per kind of statement."""
    from django_pg_real_pool import _session

    check = _session.session_state_of
    costs = {}
    number = 50_000
    for label, sql in CHECKED_SQL.items():

        def one(sql: str = sql) -> object:
            return check(sql)

        best = min(timeit.repeat(one, number=number, repeat=5))
        costs[label] = best / number * 1e9
    return costs


def context_check_costs() -> dict[str, float]:
    """ns per borrow of the session-context check (``_replay.on_borrow``)
    when it sends nothing: no context anywhere, and a connection already
    carrying the borrower's tenant (an equal value from another request)."""
    from types import SimpleNamespace

    from django_pg_real_pool import _replay, session_context

    wrapper: Any = SimpleNamespace(alias="default")
    state: Any = SimpleNamespace(replayed=None)
    number = 200_000
    costs = {}

    def one() -> None:
        _replay.on_borrow(wrapper, None, state)

    costs["no session_context anywhere"] = min(timeit.repeat(one, number=number, repeat=5))
    with session_context("default", settings={"app.tenant_id": "1"}):
        # Applied by an earlier request: equal, not the same object.
        state.replayed = (("app.tenant_id", "1"),)
        costs["same tenant as the connection carries"] = min(
            timeit.repeat(one, number=number, repeat=5)
        )
    return {label: best / number * 1e9 for label, best in costs.items()}


def enable_telemetry() -> Callable[[], int]:
    """Register both exporters; return a function that collects once (metric count)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from django_pg_real_pool import telemetry

    reader = InMemoryMetricReader()
    telemetry.enable_opentelemetry(MeterProvider(metric_readers=[reader]))
    registry = CollectorRegistry()
    registry.register(telemetry.PrometheusCollector())

    def collect() -> int:
        data = reader.get_metrics_data()
        otel = sum(
            len(scope.metrics)
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
        )
        return otel + len(list(registry.collect()))

    return collect


def telemetry_note(mode: str) -> str:
    import importlib.util

    if importlib.util.find_spec("django_pg_real_pool.telemetry") is None:
        return (
            "not measurable: the package has no telemetry module; the engine's counters "
            "are always on and are part of every figure above"
        )
    if mode == "on":
        return (
            "telemetry ON for this run (OpenTelemetry SDK reader and Prometheus collector "
            "registered); compare with a run with --telemetry off"
        )
    return (
        "telemetry OFF for this run. Telemetry is pull-only (a snapshot when an exporter "
        "collects), so nothing is added per query either way; run with --telemetry on "
        "to measure it"
    )


def profile(loop: Callable[[int], Timing], n: int, tool: str) -> str:
    if tool == "pyinstrument":
        try:
            from pyinstrument import Profiler
        except ImportError:
            return (
                "pyinstrument is not installed (pip install pyinstrument); use --profile cprofile"
            )
        profiler = Profiler(interval=0.0001)
        profiler.start()
        loop(n)
        profiler.stop()
        return str(profiler.output_text(unicode=True, color=False, show_all=False))
    prof = cProfile.Profile()
    prof.enable()
    loop(n)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(25)
    return out.getvalue()


OVERHEADS = {
    "raw floor: psycopg_pool getconn+putconn": ("raw_held", "raw_pool"),
    "naive: stock pool, close() after each query": ("stock_held", "stock_naive"),
    "django_pg_real_pool (native pool)": ("real_held", "real"),
    "django_pg_real_pool (native) vs held in autocommit (pinned())": ("real_pinned", "real"),
    "django_pg_real_pool.dj_db_conn_pool": ("realdj_held", "realdj"),
    "session_context, same tenant back to back (vs no context)": ("real", "real_tenant"),
    "django_pg_real_pool released vs stock held (all costs)": ("stock_held", "real"),
    "cursor bookkeeping on a held connection (real held - stock held)": ("stock_held", "real_held"),
}
FLOOR = "raw floor: psycopg_pool getconn+putconn"
OURS = "django_pg_real_pool (native pool)"


def main() -> None:
    args = parse_args()
    when = h.stamp()
    with h.postgres() as (_admin, dsn):
        h.configure_django(
            {
                alias: h.database_entry(kind, dsn, pool_size=4, min_size=1)
                for alias, kind in ALIASES.items()
            }
        )
        from psycopg_pool import ConnectionPool

        params = {
            "command": h.command("benchmarks.micro"),
            "statement": SQL,
            "rounds": args.rounds,
            "queries per loop and round": args.queries,
            "telemetry": args.telemetry,
            "load average at start": h.load_average(),
            **h.machine(dsn),
        }
        h.print_params("micro: per-query release overhead", params)
        pool = ConnectionPool(dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True)
        try:
            pool.wait()
            collect = enable_telemetry() if args.telemetry == "on" else None
            loops = make_loops(pool)
            wall, cpu = measure(loops, args.rounds, args.queries)
            collected = collect() if collect is not None else 0
            checks = session_check_costs()
            context_checks = context_check_costs()
            profile_text = (
                profile(loops["real"], args.profile_queries, args.profile) if args.profile else ""
            )
        finally:
            pool.close()
            h.close_django_pools()

    med = {name: statistics.median(values) for name, values in wall.items()}
    med_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    quart = {name: statistics.quantiles(values, n=4) for name, values in wall.items()}
    print("### Time per query (µs; median over rounds, p25-p75 across rounds)\n")
    rows = [
        [LABELS[n], f"{med[n]:.1f}", f"{quart[n][0]:.1f}-{quart[n][2]:.1f}", f"{med_cpu[n]:.1f}"]
        for n in wall
    ]
    print(h.markdown_table(["loop", "wall µs/query", "wall p25-p75", "client CPU µs/query"], rows))

    best = {name: min(values) for name, values in wall.items()}
    overheads = {label: med[b] - med[a] for label, (a, b) in OVERHEADS.items()}
    cpu_over = {label: med_cpu[b] - med_cpu[a] for label, (a, b) in OVERHEADS.items()}
    best_over = {label: best[b] - best[a] for label, (a, b) in OVERHEADS.items()}
    floor, floor_cpu, floor_best = overheads[FLOOR], cpu_over[FLOOR], best_over[FLOOR]

    def times(value: float, base: float) -> str:
        return f"{value / base:.2f}x" if base > 0 else "n/a"

    print("\n### Release overhead per query (released loop - held loop)\n")
    rows = [
        [
            label,
            f"{overheads[label]:.1f}",
            times(overheads[label], floor),
            f"{cpu_over[label]:.1f}",
            times(cpu_over[label], floor_cpu),
            f"{best_over[label]:.1f}",
            times(best_over[label], floor_best),
        ]
        for label in OVERHEADS
    ]
    headers = ["what", "µs/query", "x raw floor", "client CPU µs", "CPU x", "best µs", "best x"]
    print(h.markdown_table(headers, rows))
    ratio = overheads[OURS] / floor if floor > 0 else float("nan")
    print(
        f"\nTarget: this engine <= 2.00x the raw floor. Measured: {ratio:.2f}x (wall, medians); "
        f"{times(cpu_over[OURS], floor_cpu)} (client CPU, medians); "
        f"{times(best_over[OURS], floor_best)} (wall, best rounds)."
    )

    print("\n### Session-state SQL check (`_session.session_state_of`), per statement\n")
    rows = [[label, f"{ns:.0f}"] for label, ns in checks.items()]
    print(h.markdown_table(["statement", "ns/call"], rows))
    print("\n### Session-context check at each borrow (`_replay.on_borrow`), nothing sent\n")
    rows = [[label, f"{ns:.0f}"] for label, ns in context_checks.items()]
    print(h.markdown_table(["case", "ns/borrow"], rows))
    note = telemetry_note(args.telemetry)
    print(f"\nTelemetry: {note}.")
    if collected:
        print(f"(one collection after the run exported {collected} metric families)")
    if profile_text:
        print(f"\n### Profile of the engine's per-query loop ({args.profile})\n")
        print("```\n" + profile_text.rstrip() + "\n```")

    payload = {
        "params": params,
        "wall_us_per_query": wall,
        "cpu_us_per_query": cpu,
        "median_us_per_query": med,
        "overhead_us_per_query": overheads,
        "overhead_cpu_us_per_query": cpu_over,
        "overhead_best_us_per_query": best_over,
        "ratio_to_floor": ratio,
        "context_check_ns": context_checks,
        "session_check_ns": checks,
        "telemetry": note,
    }
    path = h.write_json("micro", payload, when)
    print(f"\nRaw figures: {path}")
    plot(wall, overheads, floor, h.png_path("micro", when))


def plot(wall: dict[str, list[float]], overheads: dict[str, float], floor: float, png: Any) -> None:
    plt = h.pyplot()
    if plt is None:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    names = list(wall)
    left.boxplot([wall[n] for n in names], orientation="horizontal")
    left.set_yticks(range(1, len(names) + 1), [LABELS[n] for n in names], fontsize=7)
    left.set_xlabel("µs per query (one point per round)")
    left.set_title("Time per SELECT 1")
    labels = list(overheads)
    right.barh(labels, [overheads[k] for k in labels], color="tab:blue")
    right.axvline(2 * floor, color="tab:red", linestyle="--", label="2x raw floor (target)")
    right.set_xlabel("µs per query")
    right.set_title("Release overhead per query")
    right.tick_params(axis="y", labelsize=7)
    right.legend()
    h.save_figure(plt, fig, png)


if __name__ == "__main__":
    main()
