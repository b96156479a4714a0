"""A throwaway PgBouncer in transaction mode, for the tests and the benchmarks.

PgBouncer refuses to run as root: as root it runs as the unprivileged user the
test server uses. It listens on a free loopback port, is started per test module or
benchmark configuration and stopped by its pid, so its server connections never
outlive the run that opened them. ``find_pgbouncer(install=True)`` installs it
with apt-get when running as root and it is missing (CI runs as root on Debian).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.support.pgserver import _service_user, free_port
from tests.support.processes import ManagedProcess

_CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def find_pgbouncer(*, install: bool) -> tuple[str | None, str]:
    """``(path, "")`` or ``(None, why it is unavailable)``; installs it with
    apt-get when allowed, missing and running as root."""
    found = shutil.which("pgbouncer") or next((p for p in _CANDIDATES if os.path.exists(p)), None)
    if found:
        return found, ""
    if not install:
        return None, "pgbouncer is not installed (and --no-install was given)"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "pgbouncer is not installed; install it (e.g. apt-get install pgbouncer)"
    print("(installing pgbouncer: apt-get install -y pgbouncer)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "pgbouncer"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = shutil.which("pgbouncer") or next((p for p in _CANDIDATES if os.path.exists(p)), None)
    if found:
        return found, ""
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
    return None, f"apt-get install pgbouncer failed: {tail[0]}"


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    """The version of the ``pgbouncer`` at ``binary`` (``pgbouncer --version``)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"PgBouncer (\d+(?:\.\d+)*)", out.stdout + out.stderr)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def apt_candidate_version(package: str = "pgbouncer") -> str:
    """The version ``apt-get install`` would give from the configured sources, or ""."""
    if shutil.which("apt-cache") is None:
        return ""
    out = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    return match.group(1) if match and match.group(1) != "(none)" else ""


class PgBouncer:
    """One pgbouncer process: ``pool_size`` server connections to ``dbname``."""

    def __init__(
        self,
        binary: str,
        server_dsn: str,
        *,
        pool_size: int,
        wait_timeout: float,
        max_client_conn: int = 1024,
        extra: tuple[str, ...] = (),
    ) -> None:
        params = psycopg.conninfo.conninfo_to_dict(server_dsn)
        self.binary = binary
        self.dbname = str(params.get("dbname", "postgres"))
        self.server = params
        self.pool_size = pool_size
        self.wait_timeout = wait_timeout
        self.max_client_conn = max_client_conn
        # More ``key = value`` lines of the [pgbouncer] section.
        self.extra = extra
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgrp-pgbouncer-"))
        self.process: ManagedProcess | None = None

    def dsn(self) -> str:
        user = self.server.get("user", "postgres")
        return f"host=127.0.0.1 port={self.port} user={user} dbname={self.dbname}"

    def _config(self) -> str:
        s = self.server
        server = (
            f"host={s.get('host', '127.0.0.1')} port={s.get('port', 5432)} "
            f"dbname={self.dbname} user={s.get('user', 'postgres')}"
        )
        if s.get("password"):
            server += f" password={s['password']}"
        return "\n".join(
            [
                "[databases]",
                f"{self.dbname} = {server} pool_size={self.pool_size}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                # The benchmark server trusts loopback; the client's name is ignored.
                "auth_type = any",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                f"max_db_connections = {self.pool_size}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                f"max_client_conn = {self.max_client_conn}",
                # The counterpart of a pool timeout: a client waiting this long
                # for a server connection gets an error.
                f"query_wait_timeout = {max(1, round(self.wait_timeout))}",
                "ignore_startup_parameters = extra_float_digits,options",
                f"logfile = {self.dir / 'pgbouncer.log'}",
                "log_connections = 0",
                "log_disconnections = 0",
                *self.extra,
                "",
            ]
        )

    def start(self, timeout: float = 20.0) -> PgBouncer:
        user = _service_user()
        config = self.dir / "pgbouncer.ini"
        config.write_text(self._config())
        kwargs: dict[str, Any] = {}
        if user is not None:
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            os.chown(config, user.pw_uid, user.pw_gid)
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        self.process = ManagedProcess(
            [self.binary, str(config)], cwd=self.dir, name="pgbouncer", popen_kwargs=kwargs
        ).start()
        deadline = time.monotonic() + timeout
        while True:
            # Readiness is the listening socket; nothing to wait on but the port.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if not self.process.running() or time.monotonic() > deadline:
                    output = self.output()
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start:\n{output[-2000:]}") from None
                time.sleep(0.02)

    def output(self) -> str:
        text = self.process.output() if self.process is not None else ""
        log = self.dir / "pgbouncer.log"
        if log.exists():
            text += log.read_text(errors="replace")
        return text

    def cpu_seconds(self) -> float:
        """User + system CPU time pgbouncer has used so far."""
        if self.process is None:
            return 0.0
        # /proc/<pid>/stat fields 14 and 15: utime and stime, in clock ticks.
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM: immediate shutdown, server connections closed.
            self.process.stop(timeout=10)
            self.process.log_path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
