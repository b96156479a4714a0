"""Pool sizes from measurements: Little's law and the Erlang C queue.

Between two telemetry snapshots of one alias in one process, the engine's
counters give the borrow rate ``λ`` (borrows per second), the mean hold
``S`` (seconds a borrow keeps its connection, from borrow to return) and the
measured mean wait. Little's law gives the offered load ``a = λ·S``: the mean
number of connections busy. A pool of ``c`` connections serving it is an
M/M/c queue: the chance that a borrow waits is Erlang's C formula, and the
mean wait ``C(c, a)·S / (c - a)``. The advice is the smallest ``c`` whose
predicted mean wait is within the target.

A fleet of ``N`` such processes needs ``N * c`` server connections when each
process has its own pool (direct to PostgreSQL), but only the size for the
load ``N·a`` when one pooler (PgBouncer in transaction mode) shares its
server connections between them all: one queue of many servers waits less
than many small ones.

The M/M/c model assumes independent borrows (Poisson arrivals). Threads of a
Python process are not: the GIL releases them in bursts, so more borrows
queue than Erlang C predicts. The engine counts the borrows that queued, so
the ratio of the measured queued share to Erlang C's at the current size
(``burstiness``, at least 1) scales the predicted chance of waiting at every
size, as the Allen-Cunneen approximation scales an M/M/c wait by the
arrivals' variability. A saturated pool hides demand (the measured rate is
what the pool let through), which lowers the confidence, as do few samples
and a model that disagrees with the wait measured at the current size.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from . import telemetry

#: Borrows in the window for each confidence level.
_HIGH_SAMPLES = 1000
_MEDIUM_SAMPLES = 100
#: A share of queued borrows above this means the pool capped the demand.
_SATURATED = 0.5
#: Model vs measured mean wait at the current size: agreement within this factor
#: (or both below the target) keeps the confidence.
_AGREEMENT = 2.0
_LARGEST = 10_000


@dataclasses.dataclass(frozen=True)
class Measure:
    """One alias in one process over ``seconds``."""

    seconds: float
    borrows: int
    hold_sum: float
    releases: int
    wait_sum: float
    queued: int
    timeouts: int
    max_size: int | None


def measure(before: Mapping[str, Any], after: Mapping[str, Any], seconds: float) -> Measure:
    """The difference of two ``telemetry.snapshot()[alias]`` dicts."""

    def counter(key: str) -> float:
        return float(after.get(key) or 0) - float(before.get(key) or 0)

    def timing(key: str, part: str) -> float:
        return float((after.get(key) or {}).get(part, 0)) - float(
            (before.get(key) or {}).get(part, 0)
        )

    prefix = telemetry.ENGINE_PREFIX
    return Measure(
        seconds=seconds,
        borrows=round(counter(prefix + "acquires")),
        hold_sum=timing(telemetry.USE_TIME, "sum"),
        releases=round(timing(telemetry.USE_TIME, "count")),
        wait_sum=timing(telemetry.WAIT_TIME, "sum"),
        queued=round(counter(prefix + "queued")),
        timeouts=round(counter(prefix + "timeouts")),
        max_size=after.get(telemetry.CONNECTION_MAX),
    )


def combine(measures: list[Measure]) -> Measure:
    """Several processes of one fleet, as their average process."""
    n = len(measures)
    sizes = [m.max_size for m in measures if m.max_size is not None]
    return Measure(
        seconds=sum(m.seconds for m in measures) / n,
        borrows=round(sum(m.borrows for m in measures) / n),
        hold_sum=sum(m.hold_sum for m in measures) / n,
        releases=round(sum(m.releases for m in measures) / n),
        wait_sum=sum(m.wait_sum for m in measures) / n,
        queued=round(sum(m.queued for m in measures) / n),
        timeouts=round(sum(m.timeouts for m in measures) / n),
        max_size=max(sizes) if sizes else None,
    )


def erlang_c(servers: int, load: float) -> float:
    """Probability that a borrow waits, ``servers`` connections, ``load`` Erlangs."""
    if load <= 0:
        return 0.0
    if servers <= load:
        return 1.0
    # Erlang B by its stable recurrence, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return servers * b / (servers - load * (1 - b))


def mean_wait(servers: int, load: float, hold: float, burstiness: float = 1.0) -> float:
    """Mean wait per borrow (seconds) in an M/M/c queue, its chance of waiting
    scaled by ``burstiness`` (see the module); ``inf`` if overloaded."""
    if load <= 0:
        return 0.0
    if servers <= load:
        return math.inf
    return min(1.0, burstiness * erlang_c(servers, load)) * hold / (servers - load)


def size_for(load: float, hold: float, target_wait: float, burstiness: float = 1.0) -> int:
    """The smallest pool whose predicted mean wait is at most ``target_wait``."""
    servers = max(1, math.floor(load) + 1)
    while mean_wait(servers, load, hold, burstiness) > target_wait and servers < _LARGEST:
        servers += 1
    return servers


def burstiness_of(queued_share: float, servers: int | None, load: float) -> float:
    """Measured queued share over Erlang C's at the current size, at least 1."""
    if servers is None or load <= 0 or queued_share <= 0:
        return 1.0
    expected = erlang_c(servers, load)
    if expected <= 0:
        return 1.0
    return max(1.0, queued_share / expected)


@dataclasses.dataclass(frozen=True)
class Advice:
    """What :func:`advise` recommends, and on what it rests."""

    rate: float
    hold: float
    load: float
    measured_wait: float
    queued_share: float
    burstiness: float
    current_size: int | None
    current_predicted_wait: float | None
    max_size: int
    predicted_wait: float
    processes: int
    fleet_direct: int
    fleet_pooled: int
    target_wait: float
    confidence: str
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def advise(m: Measure, *, processes: int = 1, target_wait: float = 0.001) -> Advice:
    """Recommend ``max_size`` per process and the fleet's server connections."""
    rate = m.borrows / m.seconds if m.seconds > 0 else 0.0
    hold = m.hold_sum / m.releases if m.releases else 0.0
    load = rate * hold
    measured_wait = m.wait_sum / m.borrows if m.borrows else 0.0
    queued_share = m.queued / m.borrows if m.borrows else 0.0
    saturated = queued_share > _SATURATED or m.timeouts > 0
    # A saturated pool queues for want of connections, not for bursts.
    burst = 1.0 if saturated else burstiness_of(queued_share, m.max_size, load)
    size = size_for(load, hold, target_wait, burst)
    current_wait = (
        mean_wait(m.max_size, load, hold, burst) if m.max_size is not None and m.borrows else None
    )
    reasons = []
    if m.borrows >= _HIGH_SAMPLES:
        confidence = "high"
    elif m.borrows >= _MEDIUM_SAMPLES:
        confidence = "medium"
        reasons.append(f"{m.borrows} borrows measured (high needs {_HIGH_SAMPLES})")
    else:
        confidence = "low"
        reasons.append(f"only {m.borrows} borrows measured")
    if saturated:
        confidence = "low"
        reasons.append(
            f"{queued_share:.0%} of borrows queued and {m.timeouts} timed out: the pool "
            "capped the demand, which may be higher; take the size as a lower bound"
        )
    elif current_wait is not None and not _agree(current_wait, measured_wait, target_wait):
        confidence = "medium" if confidence == "high" else confidence
        reasons.append(
            f"at the current size the model predicts {current_wait * 1000:.3f} ms mean wait, "
            f"{measured_wait * 1000:.3f} ms was measured (bursty or correlated borrows)"
        )
    # One PgBouncer queue for the fleet: the same burstiness, spread wider.
    pooled = size_for(load * processes, hold, target_wait, burst)
    return Advice(
        rate=rate,
        hold=hold,
        load=load,
        measured_wait=measured_wait,
        queued_share=queued_share,
        burstiness=burst,
        current_size=m.max_size,
        current_predicted_wait=current_wait,
        max_size=size,
        predicted_wait=mean_wait(size, load, hold, burst),
        processes=processes,
        fleet_direct=size * processes,
        fleet_pooled=pooled,
        target_wait=target_wait,
        confidence=confidence,
        reasons=tuple(reasons),
    )


def _agree(model: float, measured: float, target: float) -> bool:
    if model <= target and measured <= target:
        return True
    low, high = sorted((model, measured))
    return high <= _AGREEMENT * max(low, 1e-6)


def render(alias: str, advice: Advice) -> str:
    """Plain text for ``pool_status --advise``."""
    a = advice
    current = "-" if a.current_size is None else str(a.current_size)
    predicted_now = (
        "-" if a.current_predicted_wait is None else _ms(a.current_predicted_wait) + " predicted"
    )
    lines = [
        f"Sizing advice for alias {alias!r} (target mean wait {_ms(a.target_wait)} per borrow)",
        f"  measured: {a.rate:.1f} borrows/s, mean hold {_ms(a.hold)}, load {a.load:.2f} "
        f"connections busy on average (Little's law), mean wait {_ms(a.measured_wait)}, "
        f"{a.queued_share:.1%} queued (burstiness {a.burstiness:.1f}x Erlang C)",
        f"  now:      max_size {current}, {predicted_now}",
        f"  advice:   max_size {a.max_size} per process ({_ms(a.predicted_wait)} predicted)",
        f"  fleet of {a.processes} process(es): {a.fleet_direct} server connections with a "
        f"pool per process; {a.fleet_pooled} behind one transaction-mode PgBouncer",
        f"  confidence: {a.confidence}" + (f" ({'; '.join(a.reasons)})" if a.reasons else ""),
    ]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:.3f} ms"
