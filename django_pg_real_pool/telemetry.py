"""Pool statistics per alias, named after OpenTelemetry's database client conventions.

Everything is pulled when asked: :func:`snapshot` reads the counters the
engine keeps on every borrow anyway (``_counters.counters_by_alias()``) and the
pools' own statistics, so exporting costs nothing per query, enabled or not.
Nothing is registered at import: :func:`enable_opentelemetry` and
:class:`PrometheusCollector` are explicit.

The three timings (``create_time``, ``wait_time``, ``use_time``) are histograms
in the conventions. OpenTelemetry has no asynchronous histogram, and recording
each borrow would put work on the hot path, so they are exported as a
cumulative sum (seconds) and a count: average = delta(sum) / delta(count).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any

from . import _counters, _engines, _leaks, _registry

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation


__all__ = [
    "CONNECTION_COUNT",
    "CONNECTION_IDLE_MAX",
    "CONNECTION_IDLE_MIN",
    "CONNECTION_MAX",
    "CREATE_TIME",
    "PENDING_REQUESTS",
    "POOL_NAME",
    "STATE",
    "TIMEOUTS",
    "USE_TIME",
    "WAIT_TIME",
    "PrometheusCollector",
    "enable_opentelemetry",
    "snapshot",
]

# -- names (OpenTelemetry semantic conventions, database client metrics) --------

CONNECTION_COUNT = "db.client.connection.count"
CONNECTION_MAX = "db.client.connection.max"
CONNECTION_IDLE_MAX = "db.client.connection.idle.max"
CONNECTION_IDLE_MIN = "db.client.connection.idle.min"
PENDING_REQUESTS = "db.client.connection.pending_requests"
TIMEOUTS = "db.client.connection.timeouts"
CREATE_TIME = "db.client.connection.create_time"
WAIT_TIME = "db.client.connection.wait_time"
USE_TIME = "db.client.connection.use_time"
#: Attributes.
POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
STATE_IDLE = "idle"
STATE_USED = "used"
#: This engine's own counters: ``ENGINE_PREFIX + key`` for each per-wrapper counter.
ENGINE_PREFIX = "django_pg_real_pool."
#: Connections held longer than ``leak_threshold`` (reported by the leak detector).
LEAKS_DETECTED = ENGINE_PREFIX + "leaks_detected"
ENGINE = ENGINE_PREFIX + "engine"
PROCESS_PID = "process.pid"

_TIMINGS = (CREATE_TIME, WAIT_TIME, USE_TIME)
#: What the count of each timing counts.
_TIMING_UNITS = {CREATE_TIME: "{connection}", WAIT_TIME: "{request}", USE_TIME: "{use}"}
_GAUGES = (CONNECTION_MAX, CONNECTION_IDLE_MAX, CONNECTION_IDLE_MIN, PENDING_REQUESTS)
_DESCRIPTIONS = {
    CONNECTION_COUNT: "Connections currently in the pool, by state (used includes "
    "connections being opened or returned)",
    CONNECTION_MAX: "Maximum number of open connections allowed",
    CONNECTION_IDLE_MAX: "Maximum number of idle connections allowed",
    CONNECTION_IDLE_MIN: "Minimum number of idle connections allowed",
    PENDING_REQUESTS: "Requests currently waiting for a connection",
    TIMEOUTS: "Borrows that gave up waiting for a connection",
    CREATE_TIME: "Time it took to create new connections",
    WAIT_TIME: "Time it took to obtain a connection from the pool",
    USE_TIME: "Time between borrowing a connection and returning it",
}


# -- snapshot --------------------------------------------------------------------


def snapshot() -> dict[str, dict[str, Any]]:
    """This process's statistics, ``{alias: {metric name: value}}``.

    Per alias: ``CONNECTION_COUNT`` is ``{"idle": n, "used": n}``; the timings
    are ``{"count": n, "sum": seconds}`` (``None`` when the pool does not
    measure it); limits are ints or ``None``; ``ENGINE_PREFIX + key`` holds the
    engine's cumulative counters (acquires, releases, resets, discards, ...).
    Aliases are those configured with one of this package's engines plus any
    that has borrowed; an alias whose pool does not exist yet reports zeros.
    Reads only: never creates a pool or a wrapper.
    """
    counters = _counters.counters_by_alias()
    leaks = _leaks.reports_by_alias()
    engines = _configured_engines()
    aliases = sorted(set(engines) | set(counters))
    return {
        alias: _alias_snapshot(alias, engines.get(alias), counters.get(alias, Counter()), leaks)
        for alias in aliases
    }


def _configured_engines() -> dict[str, str]:
    from django.conf import settings

    if not settings.configured:
        return {}
    # Named by the pool underneath (what the measures mean), not the ENGINE
    # setting: a composed engine reports the plain engine of its pool.
    kinds = _engines.our_aliases(settings.DATABASES)
    return {alias: _engines.ENGINE_OF_KIND[kind] for alias, kind in kinds.items()}


def _alias_snapshot(
    alias: str, engine: str | None, counters: Counter[str], leaks: Mapping[str, int]
) -> dict[str, Any]:
    pool = _pool_measures(alias)
    if engine is None:
        engine = pool.pop(ENGINE, None)
    else:
        pool.pop(ENGINE, None)
    acquires, releases = counters["acquires"], counters["releases"]
    data: dict[str, Any] = {
        POOL_NAME: alias,
        PROCESS_PID: os.getpid(),
        ENGINE: engine,
        CONNECTION_COUNT: {STATE_IDLE: 0, STATE_USED: 0},
        CONNECTION_MAX: None,
        CONNECTION_IDLE_MAX: None,
        CONNECTION_IDLE_MIN: None,
        PENDING_REQUESTS: None,
        TIMEOUTS: None,
        CREATE_TIME: None,
        WAIT_TIME: {"count": acquires, "sum": counters["wait_us"] / 1e6},
        USE_TIME: {"count": releases, "sum": counters["use_us"] / 1e6},
    }
    data.update(pool)
    if "timeouts" in _counters.COUNTER_KEYS:
        # The engine counts PoolExhausted itself: the same meaning for both pools.
        data[TIMEOUTS] = counters["timeouts"]
    for key in _counters.COUNTER_KEYS:
        data[ENGINE_PREFIX + key] = counters[key]
    data[LEAKS_DETECTED] = leaks.get(alias, 0)
    return data


def _pool_measures(alias: str) -> dict[str, Any]:
    """The pool's own view of ``alias`` (none if this process made no pool for it)."""
    supply = _registry.get(alias)
    if supply is None:
        return {}
    if supply.engine == _engines.QUEUEPOOL_ENGINE:
        return {ENGINE: supply.engine, **_queuepool_measures(supply.adapter.pool, supply.stats())}
    return {ENGINE: _engines.NATIVE_ENGINE, **_native_measures(supply.stats())}


def _native_measures(stats: Mapping[str, int]) -> dict[str, Any]:
    # psycopg_pool counters appear in get_stats() only once non-zero.
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    created = stats.get("connections_num", 0) - stats.get("connections_errors", 0)
    return {
        CONNECTION_COUNT: {STATE_IDLE: available, STATE_USED: max(size - available, 0)},
        CONNECTION_MAX: stats.get("pool_max"),
        # psycopg_pool keeps up to max_size idle (shrinking towards min_size
        # after max_idle): both bounds are its sizes.
        CONNECTION_IDLE_MAX: stats.get("pool_max"),
        CONNECTION_IDLE_MIN: stats.get("pool_min"),
        PENDING_REQUESTS: stats.get("requests_waiting", 0),
        # Waits that ended in an error: timeouts, plus max_waiting refusals.
        TIMEOUTS: stats.get("requests_errors", 0),
        CREATE_TIME: {"count": created, "sum": stats.get("connections_ms", 0) / 1000},
    }


def _queuepool_measures(pool: Any, stats: Mapping[str, int]) -> dict[str, Any]:
    # QueuePool neither counts waiters, timeouts nor connection set-up time.
    # Parked connections (see _supply.py) are checked out for it, idle for us;
    # the borrowers it could not serve wait in the supply, where they are seen.
    parked = stats["pool_parked"]
    size = pool.size()
    overflow = pool._max_overflow
    return {
        PENDING_REQUESTS: stats["lane_waiting"],
        CONNECTION_COUNT: {
            STATE_IDLE: _queuepool_idle(pool) + parked,
            STATE_USED: pool.checkedout() - parked,
        },
        CONNECTION_MAX: size + overflow if overflow >= 0 else None,
        # Connections beyond pool_size are closed when returned.
        CONNECTION_IDLE_MAX: size,
        CONNECTION_IDLE_MIN: 0,
    }


def _queuepool_idle(pool: Any) -> int:
    """Open connections resting in a QueuePool.

    ``checkedin()`` counts slots: one whose connection was invalidated (found
    dead) stays in the queue unconnected until a checkout reconnects it.
    """
    queue = getattr(getattr(pool, "_pool", None), "queue", None)
    if queue is None:  # another SQLAlchemy layout: slots are the best we have
        return int(pool.checkedin())
    return sum(1 for record in list(queue) if record.dbapi_connection is not None)


# -- OpenTelemetry ----------------------------------------------------------------

# Guards _otel_providers (enable_opentelemetry may race at start-up).
_otel_lock = threading.Lock()
_otel_providers: list[Any] = []


def enable_opentelemetry(meter_provider: MeterProvider | None = None) -> bool:
    """Register observable instruments on ``meter_provider`` (default: the global one).

    The callbacks read :func:`snapshot` when the provider's reader collects;
    nothing runs per query. Calling it again for the same provider does
    nothing. Returns True when it registered, False if already registered.
    Raises ``ImportError`` naming the extra when ``opentelemetry-api`` is missing.
    """
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise ImportError(
            "enable_opentelemetry() needs opentelemetry-api: "
            "pip install 'django-pg-real-pool[otel]'"
        ) from exc
    from . import __version__

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _otel_lock:
        if any(p is provider for p in _otel_providers):
            return False
        _otel_providers.append(provider)
    meter = provider.get_meter("django_pg_real_pool", __version__)
    meter.create_observable_up_down_counter(
        CONNECTION_COUNT,
        callbacks=[_otel_callback(_observe_count, refresh=True)],
        unit="{connection}",
        description=_DESCRIPTIONS[CONNECTION_COUNT],
    )
    for name in _GAUGES:
        unit = "{request}" if name == PENDING_REQUESTS else "{connection}"
        meter.create_observable_up_down_counter(
            name,
            callbacks=[_otel_callback(_observer_of(name))],
            unit=unit,
            description=_DESCRIPTIONS[name],
        )
    meter.create_observable_counter(
        TIMEOUTS,
        callbacks=[_otel_callback(_observer_of(TIMEOUTS))],
        unit="{timeout}",
        description=_DESCRIPTIONS[TIMEOUTS],
    )
    for name in _TIMINGS:
        meter.create_observable_counter(
            name + ".sum",
            callbacks=[_otel_callback(_timing_observer(name, "sum"))],
            unit="s",
            description=_DESCRIPTIONS[name] + " (cumulative sum)",
        )
        meter.create_observable_counter(
            name + ".count",
            callbacks=[_otel_callback(_timing_observer(name, "count"))],
            unit=_TIMING_UNITS[name],
            description=_DESCRIPTIONS[name] + " (number of measurements)",
        )
    for key in (*_counters.COUNTER_KEYS, "leaks_detected"):
        name = ENGINE_PREFIX + key
        meter.create_observable_counter(
            name,
            callbacks=[_otel_callback(_observer_of(name))],
            unit="us" if key.endswith("_us") else "1",
            description=f"django_pg_real_pool engine counter {key!r}",
        )
    return True


# (attributes, value) pairs; None values are not observed.
_Point = tuple[dict[str, str], float]


def _observe_count(snap: Mapping[str, Mapping[str, Any]]) -> Iterator[_Point]:
    for alias, data in snap.items():
        for state, value in data[CONNECTION_COUNT].items():
            yield {POOL_NAME: alias, STATE: state}, value


def _observer_of(name: str) -> Any:
    def observe(snap: Mapping[str, Mapping[str, Any]]) -> Iterator[_Point]:
        for alias, data in snap.items():
            value = data.get(name)
            if value is not None:
                yield {POOL_NAME: alias}, value

    return observe


def _timing_observer(name: str, field: str) -> Any:
    def observe(snap: Mapping[str, Mapping[str, Any]]) -> Iterator[_Point]:
        for alias, data in snap.items():
            timing = data.get(name)
            if timing is not None:
                yield {POOL_NAME: alias}, timing[field]

    return observe


# Guards _shared. One collection calls every instrument's callback in a row,
# in registration order: the first instrument's callback takes a snapshot,
# the others reuse it (never older than _SHARED_FOR, whatever the order).
_shared_lock = threading.Lock()
_shared: tuple[float, dict[str, dict[str, Any]]] | None = None
_SHARED_FOR = 1.0


def _shared_snapshot(refresh: bool) -> dict[str, dict[str, Any]]:
    global _shared
    now = monotonic()
    with _shared_lock:
        if not refresh and _shared is not None and now - _shared[0] < _SHARED_FOR:
            return _shared[1]
    snap = snapshot()
    with _shared_lock:
        _shared = (now, snap)
    return snap


def _otel_callback(observe: Any, *, refresh: bool = False) -> Any:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        snap = _shared_snapshot(refresh)
        return [Observation(value, attrs) for attrs, value in observe(snap)]

    return callback


# -- Prometheus ---------------------------------------------------------------------


class PrometheusCollector:
    """A ``prometheus_client`` custom collector over :func:`snapshot`.

    Register it explicitly (once per process)::

        from prometheus_client import REGISTRY
        from django_pg_real_pool.telemetry import PrometheusCollector

        REGISTRY.register(PrometheusCollector())

    Names follow Prometheus style: dots become underscores, counters end in
    ``_total``, timings are summaries in seconds (``_sum``/``_count``), and the
    alias is the ``pool_name`` label.
    """

    def collect(self) -> Iterator[Any]:
        try:
            from prometheus_client.core import (
                CounterMetricFamily,
                GaugeMetricFamily,
                SummaryMetricFamily,
            )
        except ImportError as exc:
            raise ImportError(
                "PrometheusCollector needs prometheus-client: "
                "pip install 'django-pg-real-pool[prometheus]'"
            ) from exc
        snap = snapshot()
        count = GaugeMetricFamily(
            _prom(CONNECTION_COUNT),
            _DESCRIPTIONS[CONNECTION_COUNT],
            labels=["pool_name", "state"],
        )
        for alias, data in snap.items():
            for state, value in data[CONNECTION_COUNT].items():
                count.add_metric([alias, state], value)
        yield count
        for name in _GAUGES:
            gauge = GaugeMetricFamily(_prom(name), _DESCRIPTIONS[name], labels=["pool_name"])
            for alias, value in _values(snap, name):
                gauge.add_metric([alias], value)
            yield gauge
        timeouts = CounterMetricFamily(
            _prom(TIMEOUTS), _DESCRIPTIONS[TIMEOUTS], labels=["pool_name"]
        )
        for alias, value in _values(snap, TIMEOUTS):
            timeouts.add_metric([alias], value)
        yield timeouts
        for name in _TIMINGS:
            summary = SummaryMetricFamily(
                _prom(name) + "_seconds", _DESCRIPTIONS[name], labels=["pool_name"]
            )
            for alias, timing in _values(snap, name):
                summary.add_metric([alias], count_value=timing["count"], sum_value=timing["sum"])
            yield summary
        for key in (*_counters.COUNTER_KEYS, "leaks_detected"):
            name = ENGINE_PREFIX + key
            counter = CounterMetricFamily(
                _prom(name), f"django_pg_real_pool engine counter {key!r}", labels=["pool_name"]
            )
            for alias, value in _values(snap, name):
                counter.add_metric([alias], value)
            yield counter


def _prom(name: str) -> str:
    return name.replace(".", "_")


def _values(snap: Mapping[str, Mapping[str, Any]], name: str) -> Iterator[tuple[str, Any]]:
    for alias, data in snap.items():
        value = data.get(name)
        if value is not None:
            yield alias, value
