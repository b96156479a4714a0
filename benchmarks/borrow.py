"""A borrow and a return without the query: this engine's own cost per pair.

``benchmarks.micro`` measures the release overhead around a real ``SELECT 1``,
where the query's own round trip and the machine's noise dwarf a few hundred
nanoseconds. This script times the pair alone, single-threaded, in rotating
order over ``--rounds`` rounds of ``--pairs`` pairs, and prints medians of
client CPU time per pair against the raw floor measured in the same run:

* raw floor: ``psycopg_pool.ConnectionPool.getconn()`` + ``putconn()``;
* supply: ``Supply.get()`` + ``Supply.put()`` (parked connection, health
  check, the supply's lock twice);
* lease: ``ensure_connection()`` + the release decision on a Django wrapper
  of the native engine (everything a query adds to the two above).

Usage::

    python -m benchmarks.borrow [--rounds 9] [--pairs 20000]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from time import process_time

from benchmarks import _harness as h


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (default 9)")
    parser.add_argument("--pairs", type=int, default=20000, help="pairs per loop and round")
    return parser.parse_args()


def timed(loop: Callable[[], None], pairs: int) -> float:
    """Client CPU µs per call of ``loop``."""
    loop()
    c0 = process_time()
    for _ in range(pairs):
        loop()
    return (process_time() - c0) / pairs * 1e6


def main() -> None:
    args = parse_args()
    with h.postgres() as (_admin, dsn):
        params = {
            "command": h.command("benchmarks.borrow"),
            "rounds x pairs": f"{args.rounds} x {args.pairs}",
            "load average at start": h.load_average(),
            **h.machine(dsn),
        }
        h.print_params("borrow: a borrow and a return, no query", params)
        h.configure_django({"default": h.database_entry("real", dsn, pool_size=4)})
        from django.db import connections
        from psycopg_pool import ConnectionPool

        from django_pg_real_pool import _counters
        from django_pg_real_pool._waiters import HeldBox

        pool = ConnectionPool(dsn, min_size=4, max_size=4, kwargs={"autocommit": True})
        pool.open(wait=True)
        # The wrapper itself: django.db.connection's proxy (a thread-local
        # lookup per attribute) costs the same with a held connection.
        connection = connections["default"]
        connection.ensure_connection()
        connection.close()
        supply = connection._lease_supply
        box, counters = HeldBox(), _counters.new_counters()

        def raw() -> None:
            pool.putconn(pool.getconn())

        def supplied() -> None:
            supply.put(supply.get(box, counters, None), box, None, counters)

        def leased() -> None:
            connection.ensure_connection()
            connection._lease_maybe_release()

        loops = {"raw floor: getconn+putconn": raw, "supply: get+put": supplied}
        loops["lease: ensure_connection + release"] = leased
        samples: dict[str, list[float]] = {name: [] for name in loops}
        try:
            for _ in range(args.rounds):
                for name, loop in loops.items():
                    samples[name].append(timed(loop, args.pairs))
        finally:
            pool.close()
            connection.close()
            h.close_django_pools()
    floor = statistics.median(samples["raw floor: getconn+putconn"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append([name, f"{median:.2f}", f"{min(values):.2f}", f"{median / floor:.2f}x"])
    print("\n### Client CPU per borrow + return (medians over rounds)\n")
    print(h.markdown_table(["what", "µs/pair", "best µs", "x raw floor"], rows))


if __name__ == "__main__":
    main()
