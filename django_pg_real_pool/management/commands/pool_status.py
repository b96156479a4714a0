"""``manage.py pool_status``: this process's pool telemetry and the server's sessions.

The telemetry part is the view of the process running the command (a
management command has its own pools; the live numbers of web and worker
processes come from their OpenTelemetry or Prometheus exporters, or from
``call_command("pool_status")`` inside them). The server part is
``pg_stat_activity`` for each alias's database and application: what every
process sharing that ``application_name`` holds right now. It is read on a
separate, unpooled connection, so the command never creates a pool.

``--advise`` recommends pool sizes from two snapshots (see ``_advise.py``):
taken ``--window`` seconds apart in this process (``call_command`` inside a
serving process), or read from files written by ``pool_status --json`` in the
serving processes (``--snapshots BEFORE AFTER``, repeatable, one pair per
process of the fleet).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from ... import _advise, _engines, telemetry

#: Our own session's application_name: recognisable, never matching an alias filter.
APPLICATION_NAME = "django_pg_real_pool pool_status"
QUERY_WIDTH = 60

_ACTIVITY_SQL = """
SELECT pid, application_name, state,
       EXTRACT(EPOCH FROM now() - xact_start)::float8,
       EXTRACT(EPOCH FROM now() - state_change)::float8,
       query
FROM pg_stat_activity
WHERE datname = current_database()
  AND backend_type = 'client backend'
  AND pid <> pg_backend_pid()
  AND (%(app)s::text IS NULL OR application_name = %(app)s)
ORDER BY application_name, state, pid
"""

_METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("engine", telemetry.ENGINE),
    ("db.client.connection.count{state=used}", telemetry.CONNECTION_COUNT + "/used"),
    ("db.client.connection.count{state=idle}", telemetry.CONNECTION_COUNT + "/idle"),
    ("db.client.connection.max", telemetry.CONNECTION_MAX),
    ("db.client.connection.idle.max", telemetry.CONNECTION_IDLE_MAX),
    ("db.client.connection.idle.min", telemetry.CONNECTION_IDLE_MIN),
    ("db.client.connection.pending_requests", telemetry.PENDING_REQUESTS),
    ("db.client.connection.timeouts", telemetry.TIMEOUTS),
    ("db.client.connection.create_time (n, avg ms)", telemetry.CREATE_TIME),
    ("db.client.connection.wait_time (n, avg ms)", telemetry.WAIT_TIME),
    ("db.client.connection.use_time (n, avg ms)", telemetry.USE_TIME),
)


class Command(BaseCommand):
    help = (
        "Print django_pg_real_pool's pool statistics for this process and the server's "
        "sessions (pg_stat_activity) for each alias's application."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            help="alias to report (repeatable; default: every alias on this package's engines)",
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON document instead of tables"
        )
        advice = parser.add_argument_group("sizing advice (--advise)")
        advice.add_argument(
            "--advise",
            action="store_true",
            help="recommend max_size per process and the fleet's server connections",
        )
        advice.add_argument(
            "--window",
            type=float,
            default=10.0,
            help="seconds between the two snapshots of this process (default 10)",
        )
        advice.add_argument(
            "--snapshots",
            nargs=2,
            action="append",
            metavar=("BEFORE", "AFTER"),
            help="two pool_status --json files of one serving process (repeat per process)",
        )
        advice.add_argument(
            "--processes",
            type=int,
            help="processes in the fleet (default: the number of --snapshots pairs, or 1)",
        )
        advice.add_argument(
            "--target-wait",
            type=float,
            default=1.0,
            help="target mean wait per borrow in milliseconds (default 1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = options["databases"] or list(_engines.our_aliases(connections.settings))
        if options["advise"]:
            self._advise(aliases, options)
            return
        taken = time.time()
        snap = {alias: data for alias, data in telemetry.snapshot().items() if alias in aliases}
        activity = {alias: server_sessions(alias) for alias in aliases}
        if options["json"]:
            document = {"time": taken, "pools": snap, "server": activity}
            self.stdout.write(json.dumps(document, default=str))
            return
        self.stdout.write(render(snap, activity))

    def _advise(self, aliases: list[str], options: dict[str, Any]) -> None:
        pairs = [_read_pair(before, after) for before, after in options["snapshots"] or []]
        if not pairs:
            before = time.time(), telemetry.snapshot()
            # The window this process serves its own traffic in (call_command
            # from a thread of a serving process): nothing to wait on but time.
            time.sleep(options["window"])
            pairs = [(before, (time.time(), telemetry.snapshot()))]
        processes = options["processes"] or len(pairs)
        report: dict[str, Any] = {}
        for alias in aliases:
            measures = [
                _advise.measure(b[1][alias], a[1][alias], a[0] - b[0])
                for b, a in pairs
                if alias in b[1] and alias in a[1]
            ]
            if not measures:
                continue
            advice = _advise.advise(
                _advise.combine(measures),
                processes=processes,
                target_wait=options["target_wait"] / 1000,
            )
            report[alias] = advice
        if options["json"]:
            document = {alias: advice.as_dict() for alias, advice in report.items()}
            self.stdout.write(json.dumps(document, default=str))
            return
        self.stdout.write(
            "\n\n".join(_advise.render(alias, advice) for alias, advice in report.items())
            or "(no snapshot has these aliases)"
        )


Snapshot = tuple[float, dict[str, dict[str, Any]]]


def _read_pair(before: str, after: str) -> tuple[Snapshot, Snapshot]:
    return _read(before), _read(after)


def _read(path: str) -> Snapshot:
    with open(path) as f:
        document = json.load(f)
    return float(document["time"]), document["pools"]


def server_sessions(alias: str) -> list[dict[str, Any]]:
    """``pg_stat_activity`` rows of ``alias``'s database and application_name."""
    wrapper = connections[alias]
    params = wrapper.get_connection_params()
    app = params.get("application_name")
    params["application_name"] = APPLICATION_NAME
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        rows = conn.execute(_ACTIVITY_SQL, {"app": app}).fetchall()
    return [
        {
            "pid": pid,
            "application_name": application,
            "state": state,
            "xact_age": xact_age,
            "state_age": state_age,
            "query": query,
        }
        for pid, application, state, xact_age, state_age, query in rows
    ]


def render(
    snap: Mapping[str, Mapping[str, Any]], activity: Mapping[str, list[dict[str, Any]]]
) -> str:
    """Both views as plain-text tables."""
    aliases = list(snap)
    pid = next(iter(snap.values()))[telemetry.PROCESS_PID] if snap else "-"
    out = [f"Pools of this process (pid {pid})", ""]
    if aliases:
        rows = [[label, *(_metric(snap[a], key) for a in aliases)] for label, key in _METRIC_ROWS]
        counters = sorted(
            {k for data in snap.values() for k in data if k.startswith(telemetry.ENGINE_PREFIX)}
            - {telemetry.ENGINE}
        )
        rows += [[key, *(_cell(snap[a].get(key)) for a in aliases)] for key in counters]
        out.append(table(["metric", *aliases], rows))
    else:
        out.append("(no alias uses a django_pg_real_pool engine)")
    for alias, sessions in activity.items():
        states = Counter(s["state"] or "-" for s in sessions)
        summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
        out += ["", f"Server sessions of alias {alias!r} (pg_stat_activity): {summary}", ""]
        if sessions:
            out.append(
                table(
                    ["pid", "application", "state", "xact age", "state age", "query"],
                    [
                        [
                            str(s["pid"]),
                            s["application_name"] or "-",
                            s["state"] or "-",
                            _seconds(s["xact_age"]),
                            _seconds(s["state_age"]),
                            _query(s["query"]),
                        ]
                        for s in sessions
                    ],
                )
            )
    return "\n".join(out) + "\n"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _metric(data: Mapping[str, Any], key: str) -> str:
    if "/" in key:
        name, state = key.split("/")
        return _cell(data[name][state])
    value = data.get(key)
    if isinstance(value, Mapping):
        count = value["count"]
        avg = value["sum"] / count * 1000 if count else 0.0
        return f"{count}, {avg:.3f}"
    return _cell(value)


# telemetry names an alias's engine by its pool's plain engine: show the pool.
_ENGINE_NAMES = {engine: kind for kind, engine in _engines.ENGINE_OF_KIND.items()}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return _ENGINE_NAMES.get(value, str(value)) if isinstance(value, str) else str(value)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _query(query: str | None) -> str:
    text = " ".join((query or "").split())
    return text if len(text) <= QUERY_WIDTH else text[: QUERY_WIDTH - 3] + "..."
