"""What the worker benchmarks' rows share (``benchmarks/workers*.py``).

A row is one engine on one task runner: the figures of
:func:`tests.support.taskprojects.measure_load` (or the Celery harness's
equivalent), as floats under :data:`KEYS`.
"""

from __future__ import annotations

from typing import Any

ENGINES = ("stock", "real")
#: The figures a ``run_row()`` returns.
KEYS = (
    "tasks",
    "seconds",
    "throughput",
    "ideal",
    "ratio",
    "peak_connections",
    "errors",
    "pool_timeouts",
    "peak_concurrent_work",
)


def check_engine(engine: str) -> None:
    """``engine`` is ``"stock"`` (Django's backend on its native pool) or
    ``"real"`` (django_pg_real_pool); ValueError otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"engine is {engine!r}; use 'stock' or 'real'")


def row(figures: dict[str, Any]) -> dict[str, float]:
    """The :data:`KEYS` of a load run's ``figures``, as floats."""
    return {key: float(figures[key]) for key in KEYS}
