"""The benchmarks' PgBouncer: the tests' own (``tests/support/pgbouncer.py``)."""

from tests.support.pgbouncer import (
    PgBouncer,
    apt_candidate_version,
    find_pgbouncer,
    pgbouncer_version,
)

__all__ = ["PgBouncer", "apt_candidate_version", "find_pgbouncer", "pgbouncer_version"]
