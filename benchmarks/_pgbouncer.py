"""The benchmarks' PgBouncer: the tests' own (``tests/support/pgbouncer.py``)."""

from tests.support.pgbouncer import PgBouncer, find_pgbouncer

__all__ = ["PgBouncer", "find_pgbouncer"]
