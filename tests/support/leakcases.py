"""The leak cases every task-queue e2e project runs, and what each must show.

The projects' task modules share the leak actors
(``integrations/_common/actors.py``); their tests share this: the cases, the
count of committed notes, what a clean probe on the leaking thread reports,
and what the leak record must say. Each project's test module adds only how
its queue starts a worker, sends a task and reads its outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.pgstat import sessions, wait_until
from tests.support.processes import ManagedProcess
from tests.support.taskprojects import LeakLog

#: The default ``search_path`` a clean session reports.
DEFAULT_SEARCH_PATH = '"$user", public'

#: task, what its leak record must say, the builtin exception it raised (if any).
LEAKS = [
    ("leak_autocommit_off", "autocommit left off", None),
    ("leak_open_cursor", "cursor(s) not closed", None),
    ("leak_pinned_exception", "pinned() block not exited", "RuntimeError"),
    ("leak_atomic_left_open", "atomic() block still open", "ValueError"),
    ("leak_search_path", "session state set outside pinned() (SET)", None),
]
LEAK_IDS = [case[0] for case in LEAKS]


def committed(admin: psycopg.Connection[Any], app: str, marker: str) -> int:
    """Notes with ``marker`` committed in ``<app>_note`` (a leak's write must not be)."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE marker = %s").format(
        sql.Identifier(f"{app}_note")
    )
    row = admin.execute(query, [marker]).fetchone()
    assert row is not None
    return int(row[0])


def assert_clean_probe(seen: dict[str, Any], admin: psycopg.Connection[Any], runner: str) -> None:
    """What the shared ``probe`` task saw, and the server's view of ``runner``'s
    sessions (``pgstat.sessions``): a fresh session, nothing held, all idle."""
    assert seen["search_path"] == DEFAULT_SEARCH_PATH
    assert seen["fresh_transaction"], "the probe's query ran inside an older transaction"
    assert seen["temp_tables"] == 0
    assert seen["autocommit"] is True
    assert not seen["in_atomic_block"]
    assert seen["released"], "the probe's connection was not returned after its query"
    assert seen["holders"] == {}, "a wrapper of the worker still holds a connection"
    # A worker may be writing the probe's status right now (briefly active or
    # idle in transaction): a leaked transaction never goes idle.
    assert wait_until(
        lambda: all(s["state"] == "idle" for s in sessions(admin, runner)), timeout=10
    ), sessions(admin, runner)


def assert_leak_record(
    records: list[dict[str, Any]],
    *,
    task: str,
    task_id: str,
    problem: str,
    level: str | None = "ERROR",
    phase: str = "at task end",
) -> dict[str, Any]:
    """The one leak record of ``task_id`` (``records``: those of that id): it
    names the task, its id, the alias, ``problem`` and ``phase`` (when the
    queue reports it; ``""``: not checked), at ``level`` (``None``: not checked)."""
    [record] = records
    assert record["task"] == task
    assert record["alias"] == "default"
    if level is not None:
        assert record["level"] == level
    assert any(problem in p for p in record["problems"]), record
    said = f"{task} (id {task_id}) leaked on database alias 'default'" + (
        f" {phase}" if phase else ""
    )
    assert said in record["message"], record["message"]
    return record


class LeakRun:
    """A worker started for the leak cases, its leak log, and the thread its
    tasks run on (the worker has one: each probe runs where the leak ran)."""

    def __init__(self, project: Any, process: ManagedProcess, log: LeakLog) -> None:
        #: The project's harness: ``send(name, *args)`` and ``outcome(handle)``.
        self.project = project
        self.process = process
        self.log = log
        self.thread: int | None = None

    def probe(self) -> dict[str, Any]:
        """What the ``probe`` task saw, on the same thread as every earlier one."""
        outcome = self.project.outcome(self.project.send("probe"))
        assert outcome.ok, outcome
        seen: dict[str, Any] = outcome.value
        if self.thread is None:
            self.thread = seen["thread"]
        assert seen["thread"] == self.thread, "the worker has one thread"
        return seen


@contextlib.contextmanager
def leak_run(
    project: Any,
    name: str,
    start: Callable[[Path], ManagedProcess],
    stop: Callable[[ManagedProcess], object] = ManagedProcess.stop,
) -> Iterator[LeakRun]:
    """A worker started by ``start(leak_log_path)`` for the leak cases of
    ``project``; ``stop(process)`` and the log removed at exit."""
    log = LeakLog(name)
    process = start(log.path)
    try:
        yield LeakRun(project, process, log)
    finally:
        stop(process)
        log.remove()
