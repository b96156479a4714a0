"""After fork() the child gets its own pools and never touches the parent's sockets."""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
from django.db import connections

from tests.support.pgstat import backend_pid, idle_in_transaction, sessions
from tests.testapp.models import Item


def _run_child(body: Any) -> dict[str, Any]:
    """Fork, run ``body()`` in the child, return what it reported (JSON)."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        status = 0
        try:
            report = body()
        except BaseException as exc:
            report, status = {"error": repr(exc)}, 1
        with os.fdopen(write_fd, "w") as out:
            json.dump(report, out)
        # Leave as multiprocessing and billiard children do; a full
        # interpreter exit is tested in a separate process below.
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        data = inp.read()
    _, status = os.waitpid(child, 0)
    report: dict[str, Any] = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, report
    return report


def test_parent_child_parent(engine: str, admin: psycopg.Connection[Any]) -> None:
    parent_pids = {backend_pid(engine) for _ in range(8)}
    with connections[engine].cursor() as cursor:  # held across the fork
        cursor.execute("SELECT pg_backend_pid()")
        held_pid = cursor.fetchone()[0]

        def child() -> dict[str, Any]:
            Item.objects.using(engine).create(name="from-child")
            pids = [backend_pid(engine) for _ in range(5)]
            connections[engine].close()
            connections[engine].close_pool()
            return {"pids": pids, "count": Item.objects.using(engine).count()}

        report = _run_child(child)
        # The held connection still works in the parent after the child exited.
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == held_pid
    assert not set(report["pids"]) & (parent_pids | {held_pid})
    assert report["count"] == 1
    # The parent's pooled connections survived the child's exit.
    alive = {s["pid"] for s in sessions(admin, engine)}
    assert (parent_pids | {held_pid}) <= alive
    assert {backend_pid(engine) for _ in range(8)} <= alive
    assert Item.objects.using(engine).count() == 1
    assert not idle_in_transaction(admin)


CHILD_EXITS_NORMALLY = """
import os, sys
import django
from django.conf import settings
settings.configure(
    DATABASES={"default": {**SETTINGS}},
    INSTALLED_APPS=[], USE_TZ=True,
)
django.setup()
from django.db import connections

def pid():
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]

parent = {pid() for _ in range(6)}
held = connections["default"].cursor()
held.execute("SELECT pg_backend_pid()")
held_pid = held.fetchone()[0]
child = os.fork()
if child == 0:
    child_pid = pid()
    print("child", child_pid, flush=True)
    # What worker start-up code does (Celery's fixup, Django's close_old_connections):
    # with inherited state, this would close the parent's sockets.
    connections["default"].close()
    connections["default"].close_pool()
    import gc
    gc.collect()
    sys.exit(0)  # full interpreter shutdown
_, status = os.waitpid(child, 0)
assert os.waitstatus_to_exitcode(status) == 0
held.execute("SELECT pg_backend_pid()")
assert held.fetchone()[0] == held_pid
after = {pid() for _ in range(6)}
print("parent", sorted(parent | {held_pid}), "after", sorted(after), flush=True)
"""


def test_child_interpreter_exit_leaves_parent_sessions(engine: str) -> None:
    import subprocess
    import sys

    settings = dict(connections[engine].settings_dict)
    settings.pop("TEST", None)
    code = CHILD_EXITS_NORMALLY.replace("**SETTINGS", repr(settings)[1:-1])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert "child" in lines and "parent" in lines, result.stdout
