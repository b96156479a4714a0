"""Run Django's own test suite on this engine and on the stock backend, compare.

Downloads the sdist of the *installed* Django version from PyPI, extracts its
``tests/``, writes one settings module per configuration and runs
``tests/runtests.py`` for each, against a throwaway PostgreSQL server (or the
one ``DJANGO_PG_REAL_POOL_TEST_DSN`` names). Configurations:

* ``ours``: ``ENGINE = "django_pg_real_pool"``, native pool;
* ``ours_djpool``: ``ENGINE = "django_pg_real_pool.dj_db_conn_pool"``;
* ``stock``: ``ENGINE = "django.db.backends.postgresql"`` with ``OPTIONS["pool"]``;
* with ``--gis`` (``gis_tests`` by default, on a system PostgreSQL with
  PostGIS): ``ours_postgis`` (``django_pg_real_pool.postgis``),
  ``ours_djpool_postgis`` (``django_pg_real_pool.dj_db_conn_pool.postgis``),
  compared with ``stock_postgis`` (Django's PostGIS backend on its pool).

Each run has a timeout: a hang is reported (with every thread's stack, dumped
through ``faulthandler``) and the run killed, never waited on forever. Results
come test by test from a recording test runner (``django_suite_runner.py``),
then a table per configuration and the list of tests that fail on ours but
pass on stock. Usage::

    python scripts/django_suite.py                   # the whole suite (~10+ min per config)
    python scripts/django_suite.py --subset          # CI's bounded subset
    python scripts/django_suite.py --configs ours stock -- backends.postgresql
    python scripts/django_suite.py --gis             # gis_tests on the PostGIS engines

Exit status: 0 when no test fails on ours but passes on stock (apart from
the documented ``KNOWN`` ones) and no run timed out, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from django_suite_runner import RESULTS_ENV, START_METHOD_ENV, merge  # noqa: E402

from tests.support.pgserver import (  # noqa: E402
    DSN_ENV,
    PostgresServer,
    settings_from_dsn,
    system_bindir_with,
)

# CI's bounded subset: the apps that exercise connections and transactions
# (see docs/django-suite.md for how long it takes).
SUBSET = [
    "transactions",
    "transaction_hooks",
    "backends",
    "select_for_update",
    "queries",
    "test_utils",
    "multiple_database",
    "migrations",
]

# CI's bounded subset of gis_tests (--gis --subset): the apps that reach the
# database, all 42 of its TransactionTestCases among them (~10 s per run).
GIS_SUBSET = [
    "gis_tests.geoapp",
    "gis_tests.gis_migrations",
    "gis_tests.geogapp",
    "gis_tests.distapp",
    "gis_tests.rasterapp",
]

# Same pool for every configuration: enough for the suite's threaded tests
# (live servers, select_for_update, thread-sharing tests) on each alias.
POOL = {"min_size": 1, "max_size": 20, "timeout": 20}
DJ_POOL = {"POOL_SIZE": 20, "MAX_OVERFLOW": 0, "TIMEOUT": 20}

CONFIGS: dict[str, dict[str, Any]] = {
    "ours": {"ENGINE": "django_pg_real_pool", "OPTIONS": {"pool": POOL}},
    "ours_djpool": {
        "ENGINE": "django_pg_real_pool.dj_db_conn_pool",
        "OPTIONS": {},
        "POOL_OPTIONS": DJ_POOL,
    },
    "stock": {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {"pool": POOL}},
    "ours_postgis": {"ENGINE": "django_pg_real_pool.postgis", "OPTIONS": {"pool": POOL}},
    "ours_djpool_postgis": {
        "ENGINE": "django_pg_real_pool.dj_db_conn_pool.postgis",
        "OPTIONS": {},
        "POOL_OPTIONS": DJ_POOL,
    },
    "stock_postgis": {
        "ENGINE": "django.contrib.gis.db.backends.postgis",
        "OPTIONS": {"pool": POOL},
    },
}
DEFAULT_CONFIGS = ["ours", "ours_djpool", "stock"]
GIS_CONFIGS = ["ours_postgis", "ours_djpool_postgis", "stock_postgis"]
# What each configuration is compared with (the stock backend under it).
REFERENCE = {
    "ours": "stock",
    "ours_djpool": "stock",
    "ours_postgis": "stock_postgis",
    "ours_djpool_postgis": "stock_postgis",
}
# Tests that cannot hold for a release-as-soon-as-possible backend, per
# configuration, with the reason (docs/django-suite.md explains each). They
# are listed apart and do not fail the run; one that starts passing is
# reported so the entry can go.
_BOTH = ("ours", "ours_djpool")
_DJ = ("ours_djpool",)
_PG = "backends.postgresql.tests.Tests."
KNOWN: dict[str, tuple[tuple[str, ...], str]] = {
    "backends.tests.ThreadTests.test_default_connection_thread_local": (
        _BOTH,
        "asserts each thread's wrapper still holds its connection after its queries",
    ),
    "backends.tests.ConnectionCreatedSignalTest.test_signal": (
        _BOTH,
        "connection_created fires once per physical connection, not per borrow",
    ),
    _PG + "test_pooling_health_checks": (
        _BOTH,
        "expects psycopg_pool's per-getconn check (a round trip per query here)",
    ),
    _PG + "test_connect_pool": (
        _BOTH,
        "connect() on an exhausted pool raises PoolExhausted (django OperationalError)",
    ),
    "test_utils.tests.AssertNumQueriesUponConnectionTests."
    "test_ignores_connection_configuration_queries": (
        _BOTH,
        "its mocked ensure_connection() runs a query whose close gives the connection back",
    ),
    _PG + "test_connect_isolation_level": (
        _DJ,
        "per-alias SQLAlchemy pool ignores per-wrapper options",
    ),
    _PG + "test_connect_invalid_isolation_level": (
        _DJ,
        "per-alias SQLAlchemy pool ignores per-wrapper options",
    ),
    _PG + "test_connect_server_side_binding": (
        _DJ,
        "per-alias SQLAlchemy pool ignores per-wrapper options",
    ),
    _PG + "test_connect_pool_with_timezone": (
        _DJ,
        "configures OPTIONS['pool']; this engine uses POOL_OPTIONS",
    ),
    _PG + "test_pooling_not_support_persistent_connections": (
        _DJ,
        "configures OPTIONS['pool']; this engine uses POOL_OPTIONS",
    ),
    # Django 6.x tests.
    _PG + "test_pool_check_can_be_overridden": (
        _DJ,
        "configures OPTIONS['pool']; this engine uses POOL_OPTIONS",
    ),
    # Django skips these two when OPTIONS["pool"] is set (ours, stock); unskipped, they fail
    # on all three configurations.
    "backends.base.test_base.ConnectionHealthChecksTests.test_health_checks_enabled": (
        _DJ,
        "patches CONN_MAX_AGE=None into a wrapper that has borrowed (read once per wrapper) "
        "and expects its connection kept between queries",
    ),
    "backends.base.test_base.ConnectionHealthChecksTests."
    "test_set_autocommit_health_checks_enabled": (
        _DJ,
        "patches CONN_MAX_AGE=None into a wrapper that has borrowed (read once per wrapper) "
        "and expects its connection kept between queries",
    ),
}
OUTCOMES = ("passed", "failed", "errored", "skipped", "expected_failure")
BAD = ("failed", "errored")


def installed_django() -> str:
    import django

    return django.__version__


def fetch_tests(version: str, workdir: Path) -> Path:
    """``tests/`` of the Django sdist matching ``version`` (downloaded once)."""
    tests = workdir / f"django-{version}" / "tests"
    if (tests / "runtests.py").exists():
        return tests
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / f"django-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--dest",
                str(workdir),
                f"django=={version}",
            ],
            check=True,
        )
    prefix = f"django-{version}/tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        tar.extractall(workdir, members=members, filter="data")
    return tests


def write_settings(tests: Path, config: str, dsn: str) -> str:
    """A settings module for runtests.py; returns its module name."""
    base = settings_from_dsn(dsn)
    databases = {}
    for alias in ("default", "other"):
        entry = {
            **base,
            **json.loads(json.dumps(CONFIGS[config])),
            "NAME": f"pgrp_{config}_{alias}",
            "CONN_MAX_AGE": 0,
        }
        databases[alias] = entry
    # Per driver process: two comparisons may share one extracted suite.
    module = f"pgrp_settings_{config}_{os.getpid()}"
    (tests / f"{module}.py").write_text(
        "# Written by django-pg-real-pool's scripts/django_suite.py.\n"
        f"DATABASES = {databases!r}\n"
        'SECRET_KEY = "django_tests_secret_key"\n'
        'PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]\n'
        'DEFAULT_AUTO_FIELD = "django.db.models.AutoField"\n'
        "USE_TZ = False\n"
        'TEST_RUNNER = "django_suite_runner.RecordingRunner"\n'
    )
    return module


def run_config(
    tests: Path,
    config: str,
    dsn: str,
    labels: list[str],
    *,
    parallel: int,
    start_method: str,
    timeout: float,
    outdir: Path,
    extra_path: list[str],
) -> dict[str, Any]:
    """Run runtests.py once; return its outcomes and how the run ended."""
    module = write_settings(tests, config, dsn)
    results = outdir / f"{config}.jsonl"
    log = outdir / f"{config}.log"
    results.unlink(missing_ok=True)
    env = {
        **os.environ,
        RESULTS_ENV: str(results),
        START_METHOD_ENV: start_method,
        # The engine is installed; the repository root must not shadow the
        # suite's top-level test modules.
        "PYTHONPATH": os.pathsep.join([*extra_path, str(Path(__file__).resolve().parent)]),
        "PYTHONUNBUFFERED": "1",
    }
    args = [
        sys.executable,
        "runtests.py",
        f"--settings={module}",
        f"--parallel={parallel}",
        "--noinput",
        "-v",
        "1",
        *labels,
    ]
    shown = (
        " ".join(args[1:])
        if len(labels) <= 12
        else " ".join(args[1:6]) + f" <{len(labels)} labels>"
    )
    print(f"[{config}] {shown}  (log: {log})", flush=True)
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=tests, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        timed_out = False
        try:
            returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            # Every process of the run dumps its threads' stacks, then dies.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            (tests / f"{module}.py").unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    outcomes: dict[str, dict[str, str]] = {}
    if results.exists():
        for line in results.read_text().splitlines():
            if line.strip():
                merge(outcomes, json.loads(line))
    ran_line = _last_line_matching(log, "Ran ")
    status = "TIMEOUT" if timed_out else f"exit {returncode}"
    print(f"[{config}] {status} after {elapsed:.0f}s; {ran_line or 'no summary line'}", flush=True)
    return {
        "config": config,
        "status": status,
        "timed_out": timed_out,
        "seconds": round(elapsed),
        "summary": ran_line,
        "outcomes": outcomes,
        "log": str(log),
    }


def _last_line_matching(path: Path, prefix: str) -> str:
    found = ""
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(prefix):
                found = line.strip()
    return found


def counts(run: dict[str, Any]) -> collections.Counter[str]:
    return collections.Counter(o["outcome"] for o in run["outcomes"].values())


def regressions(ours: dict[str, Any], stock: dict[str, Any]) -> list[tuple[str, str]]:
    """Tests that fail on ``ours`` but pass (or skip) on ``stock``; also tests
    stock ran that ``ours`` never reported (a timeout cut the run short)."""
    found = []
    for name, entry in stock["outcomes"].items():
        if entry["outcome"] in BAD:
            continue
        mine = ours["outcomes"].get(name)
        if mine is None:
            found.append((name, "not run"))
        elif mine["outcome"] in BAD:
            found.append((name, mine["outcome"]))
    return sorted(found)


def known_but_passing(run: dict[str, Any]) -> list[str]:
    """``KNOWN`` entries for ``run``'s configuration that passed there."""
    return sorted(
        name
        for name, (configs, _) in KNOWN.items()
        if run["config"] in configs and run["outcomes"].get(name, {}).get("outcome") == "passed"
    )


#: Most tests the confirmation pass re-runs (beyond that, something else is wrong).
CONFIRM_MAX = 60


def disputed(runs: list[dict[str, Any]]) -> list[str]:
    """Runnable test ids whose outcome on one of our configurations disagrees
    with stock: the regressions, and the known failures that passed."""
    by_name = {run["config"]: run for run in runs}
    names: set[str] = set()
    for run in runs:
        stock = by_name.get(REFERENCE.get(run["config"], ""))
        if stock is None:
            continue
        names.update(name for name, _ in regressions(run, stock))
        names.update(known_but_passing(run))
    # Ids such as "setUpClass (app.tests.Case)" or unittest's _FailedTest are no labels.
    return sorted(n for n in names if re.fullmatch(r"[\w.]+", n) and not n.startswith("unittest."))


def confirm(runs: list[dict[str, Any]], names: list[str], **run_args: Any) -> None:
    """Re-run ``names`` one process at a time on every configuration and keep
    those outcomes: Django's parallel runner has been seen to report a test's
    outcome under a neighbouring test of the same class (Django 6.1, Python
    3.12: test_pooling_health_checks' failure filed as
    test_pool_check_can_be_overridden's)."""
    outdir: Path = run_args.pop("outdir") / "confirm"
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"confirming {len(names)} disputed test(s) with --parallel=1", flush=True)
    for run in runs:
        again = run_config(labels=names, config=run["config"], outdir=outdir, **run_args)
        # What the whole run said, for tests whose failure depends on the
        # tests before them (they pass alone).
        run["whole_run"] = {}
        for name in names:
            if name in again["outcomes"]:
                if name in run["outcomes"]:
                    run["whole_run"][name] = run["outcomes"][name]["outcome"]
                run["outcomes"][name] = again["outcomes"][name]
        run["confirmed"] = len(names)


def table(runs: list[dict[str, Any]]) -> str:
    head = "| configuration | run | seconds | tests | " + " | ".join(OUTCOMES) + " |"
    rows = [head, "|" + "---|" * (4 + len(OUTCOMES))]
    for run in runs:
        c = counts(run)
        cells = [run["config"], run["status"], str(run["seconds"]), str(sum(c.values()))]
        rows.append("| " + " | ".join(cells + [str(c[o]) for o in OUTCOMES]) + " |")
    return "\n".join(rows)


def report(runs: list[dict[str, Any]], labels: str, version: str) -> tuple[str, bool]:
    """Markdown report; second item is True when ours matches stock."""
    lines = [
        f"Django {version} test suite, labels: {labels}",
        "",
        table(runs),
        "",
    ]
    if any(run.get("confirmed") for run in runs):
        lines.append(
            f"({runs[0]['confirmed']} test(s) whose outcome disagreed with stock were run again "
            "one at a time (--parallel=1) on every configuration; those outcomes are used "
            "below.)"
        )
        lines.append("")
    for run in runs:
        kinds = collections.Counter(o.get("kind", "?") for o in run["outcomes"].values())
        if "?" not in kinds and kinds:
            lines.append(
                f"Tests by kind ({run['config']}): {kinds['transactional']} transactional "
                f"(TransactionTestCase: they reach the release path), {kinds['atomic']} in "
                f"TestCase's atomic(), {kinds['no_db']} without a database."
            )
            lines.append("")
            break
    by_name = {run["config"]: run for run in runs}
    ok = not any(run["timed_out"] for run in runs)
    for run in runs:
        stock = by_name.get(REFERENCE.get(run["config"], ""))
        if stock is None:
            continue
        config = run["config"]
        found = regressions(run, stock)
        known = [(n, o) for n, o in found if config in KNOWN.get(n, ((), ""))[0]]
        unexpected = [(n, o) for n, o in found if (n, o) not in known]
        ok = ok and not unexpected
        lines.append(f"Failing on `{config}` but passing on `{stock['config']}`: {len(unexpected)}")
        for name, outcome in unexpected:
            detail = run["outcomes"].get(name, {}).get("detail", "")
            last = detail.strip().splitlines()[-1] if detail.strip() else ""
            lines.append(f"- `{name}`: {outcome} {('- ' + last[:200]) if last else ''}".rstrip())
        lines.append("")
        if known:
            lines.append(f"Known not to hold on `{config}` (docs/django-suite.md): {len(known)}")
            lines.extend(f"- `{name}`: {KNOWN[name][1]}" for name, _ in known)
            lines.append("")
        now_passing = known_but_passing(run)
        whole_run = run.get("whole_run", {})
        alone = [n for n in now_passing if whole_run.get(n) in BAD]
        now_passing = [n for n in now_passing if n not in alone]
        if alone:
            lines.append(
                f"Known, failing on `{config}` in the whole run but passing alone "
                f"(the tests before them matter): {len(alone)}"
            )
            lines.extend(f"- `{name}`: {KNOWN[name][1]}" for name in alone)
            lines.append("")
        if now_passing:
            lines.append(f"Listed as known but passing on `{config}` (drop from KNOWN):")
            lines.extend(f"- `{name}`" for name in now_passing)
            lines.append("")
        fixed = [
            name
            for name, entry in run["outcomes"].items()
            if entry["outcome"] not in BAD and stock["outcomes"].get(name, {}).get("outcome") in BAD
        ]
        if fixed:
            lines.append(
                f"Passing on `{run['config']}` but failing on `{stock['config']}`: {len(fixed)}"
            )
            lines.extend(f"- `{name}`" for name in sorted(fixed))
            lines.append("")
    return "\n".join(lines), ok


# Collations Django's PostgreSQL test features name (features.test_collations).
ICU_COLLATIONS = ("sv-x-icu",)


def add_stand_in_collations(dsn: str) -> list[str]:
    """Create missing ICU collations in template1 as copies of "C".

    The embedded server is built without ICU, and the suite's models declare
    ``db_collation="sv-x-icu"``: without it no test database can be created.
    A stand-in lets every app migrate; the few tests that rely on Swedish or
    case-insensitive ordering then fail alike in every configuration.
    """
    import psycopg

    created = []
    template1 = psycopg.conninfo.make_conninfo(dsn, dbname="template1")
    with psycopg.connect(template1, autocommit=True) as conn:
        for name in ICU_COLLATIONS:
            found = conn.execute("SELECT 1 FROM pg_collation WHERE collname = %s", [name])
            if found.fetchone() is None:
                conn.execute(f'CREATE COLLATION "{name}" FROM "C"')
                created.append(name)
    return created


# Apps whose migrations need an extension the server may lack.
NEEDS_EXTENSION = {"postgres_tests": "pgcrypto", "db_functions": "pgcrypto"}


def missing_extensions(dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT name FROM pg_available_extensions").fetchall()
    available = {row[0] for row in rows}
    return {ext for ext in NEEDS_EXTENSION.values() if ext not in available}


def whole_suite_labels(tests: Path, skip: set[str]) -> list[str]:
    """Every top-level test app runtests.py would discover, minus ``skip``."""
    ignored = {"import_error_package", "test_runner_apps", "gis_tests"} | skip
    return sorted(
        entry.name
        for entry in tests.iterdir()
        if entry.is_dir()
        and "." not in entry.name
        and entry.name not in ignored
        and (entry / "__init__.py").exists()
    )


@contextlib.contextmanager
def server(*, postgis: bool = False) -> Iterator[str]:
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        # Someone else's server: left as it is (it needs ICU for the whole suite).
        yield dsn
        return
    bindir = None
    if postgis:
        # The embedded wheel has no PostGIS (make postgis-deps installs Debian's).
        bindir = system_bindir_with("postgis")
        if bindir is None:
            raise SystemExit(
                "--gis needs a PostgreSQL with PostGIS: run `make postgis-deps` as root "
                f"(Debian's postgresql-15-postgis-3), or set {DSN_ENV}"
            )
    # The suite creates test databases per worker; the defaults allow 400 sessions.
    with PostgresServer(bindir=bindir) as pg:
        created = add_stand_in_collations(pg.dsn())
        if created:
            print(f"no ICU on this server: stand-in collation(s) {created} (copies of C)")
        yield pg.dsn()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labels", nargs="*", help="runtests.py labels (default: whole suite)")
    parser.add_argument("--subset", action="store_true", help="CI's bounded subset of labels")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), metavar="CONFIG")
    parser.add_argument(
        "--gis",
        action="store_true",
        help="the PostGIS configurations, on gis_tests unless labels are given",
    )
    parser.add_argument(
        "--skip-without-postgis",
        action="store_true",
        help="with --gis: exit 0, saying what is missing, when no server with PostGIS is found",
    )
    parser.add_argument("--parallel", type=int, default=2, choices=(1, 2))
    parser.add_argument(
        "--start-method",
        choices=("spawn", "fork"),
        default="spawn",
        help="how parallel workers start (default spawn: with fork, the stock backend's "
        "pool is inherited by both workers, which then share its sockets and hang)",
    )
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="put DIR first on the suite's PYTHONPATH (e.g. a patched copy of the engine)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "django-pg-real-pool"
        / "django-suite",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for logs and results")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the running suite is killed and the
    # throwaway server stopped (context managers), nothing left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    labels = list(args.labels) + ((GIS_SUBSET if args.gis else SUBSET) if args.subset else [])
    if args.gis and not labels:
        labels = ["gis_tests"]
    args.configs = args.configs or (GIS_CONFIGS if args.gis else DEFAULT_CONFIGS)
    if args.parallel > 1 and importlib.util.find_spec("tblib") is None:
        parser.error(
            "--parallel 2 needs tblib (Django's parallel runner pickles tracebacks with "
            "it): pip install tblib, or pass --parallel 1"
        )
    if (
        args.gis
        and args.skip_without_postgis
        and not os.environ.get(DSN_ENV)
        and system_bindir_with("postgis") is None
    ):
        print(
            "django_suite --gis skipped: no PostgreSQL with PostGIS on this machine "
            "(as root: make postgis-deps, i.e. Debian's postgresql-15-postgis-3)"
        )
        return 0
    timeout = args.timeout or (3600.0 if not labels else 900.0)
    version = installed_django()
    tests = fetch_tests(version, args.workdir)
    outdir = args.out or args.workdir / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    outdir.mkdir(parents=True, exist_ok=True)
    print(
        f"Django {version}; labels: {' '.join(labels) or '(whole suite)'}; "
        f"configs: {' '.join(args.configs)}; parallel {args.parallel} "
        f"({args.start_method}); "
        f"timeout {timeout:.0f}s per run; output in {outdir}",
        flush=True,
    )
    extra_path = [str(Path(p).resolve()) for p in args.pythonpath]
    runs = []
    with server(postgis=args.gis) as dsn:
        if not labels:
            missing = missing_extensions(dsn)
            skip = {app for app, ext in NEEDS_EXTENSION.items() if ext in missing}
            if skip:
                print(f"server lacks {sorted(missing)}: whole suite without {sorted(skip)}")
            labels = whole_suite_labels(tests, skip)
            shown = f"(whole suite{', without ' + ', '.join(sorted(skip)) if skip else ''})"
        else:
            shown = " ".join(labels)
        for config in args.configs:
            runs.append(
                run_config(
                    tests,
                    config,
                    dsn,
                    labels,
                    parallel=args.parallel,
                    start_method=args.start_method,
                    timeout=timeout,
                    outdir=outdir,
                    extra_path=extra_path,
                )
            )
        names = disputed(runs) if args.parallel > 1 else []
        if 0 < len(names) <= CONFIRM_MAX:
            confirm(
                runs,
                names,
                tests=tests,
                dsn=dsn,
                parallel=1,
                start_method=args.start_method,
                timeout=timeout,
                outdir=outdir,
                extra_path=extra_path,
            )
    text, ok = report(runs, shown, version)
    (outdir / "comparison.md").write_text(text + "\n")
    summary = [{k: v for k, v in run.items() if k != "outcomes"} for run in runs]
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
