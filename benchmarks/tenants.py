"""Multi-tenant apps: tenant state replayed on each borrow vs pinned vs PgBouncer (#18).

Every tenant is a schema ``t<i>`` holding ``bench_item (id, tenant)``, each
row naming its schema, so a read on another tenant's path is seen.

(a) **Round trips**, one thread on a pool of one connection, counted from the
server's ``pg_stat_database`` (each autocommit statement or one-round-trip
batch is one transaction there): ``--queries`` queries without any context
(the baseline, measured in the same run) and then the same queries under
``session_context(search_path=...)`` for one tenant back to back (goal: 0
extra per query), alternating between two tenants (goal: <= 1 per borrow),
alternating ``app.tenant_id`` settings, and one plain ``SET search_path``
with the ``replay`` option followed by the queries.

(b) **Throughput** of ``--threads`` threads doing a web request each: a
``SET search_path`` for a random tenant out of 2/10/100 (what django-tenants
sends), a query, ``--work-ms`` of non-database work, a query,
``request_finished``, on a pool of ``--pool-size``. Configurations:

* replay: this engine with ``OPTIONS["real_pool"]["replay"]``: the plain
  ``SET`` becomes the request's context, replayed on each borrow;
* context: this engine, the request inside ``session_context(search_path=...)``
  instead of the ``SET``;
* pin: this engine's default (``session_state="pin"``): the ``SET`` pins the
  connection to the thread until the request ends (the baseline of the ratios);
* pgbouncer: the stock engine through PgBouncer in transaction mode, with
  ``track_extra_parameters = search_path`` where its version has it (1.20+);
  without it the path stays on whichever server connection ran the ``SET``,
  and the wrong-tenant reads are counted.

Usage::

    python -m benchmarks.tenants [--tenants 2,10,100] [--threads 32] [--seconds 2.5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from benchmarks import _harness as h
from benchmarks._pgbouncer import (
    PgBouncer,
    apt_candidate_version,
    find_pgbouncer,
    pgbouncer_version,
)
from benchmarks._tenant_work import load_child, prepare_tenants, rt_child
from benchmarks.webload import add_workload_arguments

CONFIGS = {
    "replay": "this engine, replay option: the plain SET is replayed on each borrow",
    "context": "this engine, session_context(search_path=...) around the request",
    "pin": "this engine's default: the plain SET pins the connection until the request ends",
    "pgbouncer": "stock engine through PgBouncer (transaction mode), plain SET",
}
#: The round-trip phases: name, what runs, the goal in extra round trips per query.
PHASES = {
    "baseline": ("no context, no SET", ""),
    "same": ("session_context(search_path=t0), back to back", "0"),
    "alternate": ("session_context(search_path=t0 / t1), alternating per query", "<= 1"),
    "alternate_settings": ("session_context(settings={app.tenant_id: 0 / 1}), alternating", "<= 1"),
    "plain_set": ("one plain SET search_path (replay option), then the queries", "0"),
}
#: PgBouncer learnt track_extra_parameters in 1.20.
TRACKS_EXTRA = (1, 20)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", default="2,10,100", help="comma-separated tenant counts")
    parser.add_argument("--threads", type=int, default=32, help="T: request threads")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"from {list(CONFIGS)}")
    parser.add_argument("--seconds", type=float, default=2.5, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    parser.add_argument("--queries", type=int, default=400, help="queries per round-trip phase")
    parser.add_argument("--no-round-trips", action="store_true", help="skip part (a)")
    add_workload_arguments(parser)
    return parser.parse_args(argv)


# -- the parent -------------------------------------------------------------------


def transactions(admin: str) -> int:
    """Transactions the server counted on the bench database so far (all ended
    sessions included; the caller waits until the phase's sessions are gone)."""
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            [h.BENCH_DB],
        ).fetchone()
    assert row is not None
    return int(row[0])


def settled_transactions(admin: str, sampler: h.ServerSampler) -> int:
    """:func:`transactions` once the last phase's backends have exited (they
    flush their counts as they exit) and two reads agree."""
    sampler.wait_for_no_sessions()
    last = transactions(admin)
    # The counts land in shared memory as each backend exits, with no event
    # to wait on: poll, bounded (autovacuum may keep them moving).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = transactions(admin)
        if now == last:
            break
        last = now
    return last


def round_trips(
    args: argparse.Namespace, admin: str, dsn: str, sampler: h.ServerSampler
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for phase in PHASES:
        start = settled_transactions(admin, sampler)
        cfg = {"mode": "rt", "phase": phase, "dsn": dsn, "queries": args.queries}
        seen = h.run_child("benchmarks.tenants", cfg, 120)
        counted = settled_transactions(admin, sampler) - start
        results[phase] = {"transactions": counted, **_check_seen(phase, seen["seen"])}
        results[phase]["released"] = seen["released"]
    base = results["baseline"]["transactions"]
    for phase, r in results.items():
        own = 1 if phase == "plain_set" else 0  # the user's own SET
        r["extra"] = r["transactions"] - base - own
        r["extra_per_query"] = r["extra"] / args.queries
    return results


def _check_seen(phase: str, seen: list[list[Any]]) -> dict[str, Any]:
    """Queries that ran with other values than their context asked for."""
    wrong = 0
    for i, (path, tenant_id) in enumerate(seen):
        if phase in ("same", "plain_set"):
            wrong += path != "t0"
        elif phase == "alternate":
            wrong += path != f"t{i % 2}"
        elif phase == "alternate_settings":
            wrong += tenant_id != str(i % 2)
    return {"queries": len(seen), "wrong": wrong}


def run_load(
    kind: str,
    tenants: int,
    args: argparse.Namespace,
    admin: str,
    dsn: str,
    sampler: h.ServerSampler,
    bouncer: tuple[str, tuple[int, ...]] | None,
) -> dict[str, Any]:
    cfg = {
        "mode": "load",
        "kind": kind,
        "dsn": dsn,
        "tenants": tenants,
        "threads": args.threads,
        "pool_size": args.pool_size,
        "timeout": args.pool_timeout,
        "work_ms": args.work_ms,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "switch_interval": args.switch_interval,
    }
    start = settled_transactions(admin, sampler)
    with contextlib.ExitStack() as stack:
        if kind == "pgbouncer":
            assert bouncer is not None
            binary, version = bouncer
            extra = ("track_extra_parameters = search_path",) if version >= TRACKS_EXTRA else ()
            proxy = PgBouncer(
                binary,
                dsn,
                pool_size=args.pool_size,
                wait_timeout=args.pool_timeout,
                max_client_conn=max(1024, args.threads + 64),
                extra=extra,
            )
            stack.enter_context(proxy)
            cfg["dsn"] = proxy.dsn()
        t0 = sampler.now()
        result = h.run_child("benchmarks.tenants", cfg, args.seconds + args.warmup + 90)
        result["peak_server_connections"] = sampler.peak(since=t0)
    # After PgBouncer stopped: its server sessions have ended too.
    xacts = settled_transactions(admin, sampler) - start
    result["xacts_per_request"] = xacts / max(1, result["requests_whole_run"])
    return result


@contextlib.contextmanager
def _timed(label: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    print(f"  ({label}: {time.monotonic() - t0:.1f} s)", flush=True)


def bouncer_note(found: str | None, reason: str) -> tuple[tuple[str, tuple[int, ...]] | None, str]:
    """The PgBouncer to run and a sentence on ``track_extra_parameters``."""
    candidate = apt_candidate_version() or "none"
    if found is None:
        return None, f"PgBouncer unavailable: {reason}"
    version = pgbouncer_version(found)
    shown = ".".join(map(str, version)) or "?"
    if version >= TRACKS_EXTRA:
        return (found, version), f"PgBouncer {shown} with track_extra_parameters = search_path"
    return (found, version), (
        f"PgBouncer {shown} has no track_extra_parameters (1.20+); the configured apt "
        f"sources offer {candidate}: compared without it"
    )


def main() -> None:
    args = parse_args()
    if args.child:
        cfg = json.loads(args.child)
        result = rt_child(cfg) if cfg["mode"] == "rt" else load_child(cfg)
        print("RESULT " + json.dumps(result), flush=True)
        return
    counts = [int(n) for n in args.tenants.split(",")]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for kind in configs:
        if kind not in CONFIGS:
            raise SystemExit(f"unknown configuration {kind!r}; known: {list(CONFIGS)}")
    bouncer, note = None, ""
    if "pgbouncer" in configs:
        bouncer, note = bouncer_note(*find_pgbouncer(install=not args.no_install))
    when = h.stamp()
    with h.postgres() as (admin, dsn):
        prepare_tenants(dsn, max([*counts, 2]))
        params = {
            "command": h.command("benchmarks.tenants"),
            "threads T": args.threads,
            "pool max_size P": args.pool_size,
            "work W": f"{args.work_ms:g} ms",
            "tenants": counts,
            "window per run": f"{args.seconds:g} s after {args.warmup:g} s warm-up",
            "queries per round-trip phase": args.queries,
            "configurations": {k: CONFIGS[k] for k in configs},
            "pgbouncer": note or "not run",
            "load average at start": h.load_average(),
            **h.machine(dsn),
        }
        h.print_params("tenants: replay vs pin vs PgBouncer", params)
        with h.ServerSampler(admin, h.BENCH_DB) as sampler:
            rt: dict[str, Any] = {}
            if not args.no_round_trips:
                with _timed("round trips"):
                    rt = round_trips(args, admin, dsn, sampler)
            load: dict[str, Any] = {}
            for tenants in counts:
                for kind in configs:
                    if kind == "pgbouncer" and bouncer is None:
                        load[f"{kind}/{tenants}"] = {"unavailable": note}
                        continue
                    with _timed(f"{kind}, {tenants} tenants"):
                        load[f"{kind}/{tenants}"] = run_load(
                            kind, tenants, args, admin, dsn, sampler, bouncer
                        )
    load_end = h.load_average()
    report(rt, load, counts, configs, args, note, params["load average at start"], load_end)
    path = h.write_json(
        "tenants", {"params": params, "round_trips": rt, "load": load, "load_end": load_end}, when
    )
    print(f"\nRaw figures: {path}")


def report(
    rt: dict[str, Any],
    load: dict[str, Any],
    counts: list[int],
    configs: list[str],
    args: argparse.Namespace,
    note: str,
    load_start: str,
    load_end: str,
) -> None:
    if rt:
        print_round_trips(rt, args)
    print_load(load, counts, configs, args)
    print(f"\n({note})" if note else "")
    print(f"(load average: {load_start} at start, {load_end} at the end; 2-core machines vary)")


def print_round_trips(rt: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n### (a) Extra round trips per query ({args.queries} queries per phase)\n")
    rows = [
        [
            phase,
            PHASES[phase][0],
            r["transactions"],
            r["extra"],
            f"{r['extra_per_query']:.3f}",
            PHASES[phase][1] or "-",
            r["wrong"],
        ]
        for phase, r in rt.items()
    ]
    headers = ["phase", "what", "server xacts", "extra", "extra/query", "goal", "wrong values"]
    print(h.markdown_table(headers, rows))
    print(
        "\n(server xacts = transactions pg_stat_database counted for the phase: one per "
        "autocommit statement or one-round-trip batch; extra = against the baseline, "
        "measured in the same run, less the plain SET itself)"
    )


def print_load(
    load: dict[str, Any], counts: list[int], configs: list[str], args: argparse.Namespace
) -> None:
    print(f"\n### (b) {args.threads} threads, pool of {args.pool_size}: requests/s\n")
    rows = []
    for tenants in counts:
        pin = load.get(f"pin/{tenants}", {})
        for kind in configs:
            r = load[f"{kind}/{tenants}"]
            if "unavailable" in r:
                rows.append([tenants, kind, *["n/a"] * 9])
                continue
            ratio = f"{r['rps'] / pin['rps']:.2f}" if pin.get("rps") else "n/a"
            rows.append(
                [
                    tenants,
                    kind,
                    f"{r['rps']:.1f}",
                    ratio,
                    f"{r['wrong_reads']} ({r['wrong_reads'] / max(1, 2 * r['ok']):.0%})",
                    r["errors"],
                    r["timeouts"],
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    r["peak_server_connections"],
                    f"{r['xacts_per_request']:.2f}",
                ]
            )
    headers = [
        "tenants",
        "config",
        "req/s",
        "vs pin",
        "wrong-tenant reads (share)",
        "errors",
        "timeouts",
        "p50 ms",
        "p99 ms",
        "peak server conns",
        "server xacts/request",
    ]
    print(h.markdown_table(headers, rows))
    print(
        "\n(vs pin = requests/s against the pin configuration at the same tenant count, "
        "measured in the same run; wrong-tenant reads = rows of another tenant's schema; "
        "errors include queries that found no bench_item on a server connection's default path; "
        "server xacts/request = transactions pg_stat_database counted over the whole run / its "
        "requests: the SET (not in context), 2 queries, and what the engine added: replays, "
        "and for pin the DISCARD ALL and set-up after each pinned request)"
    )


if __name__ == "__main__":
    main()
