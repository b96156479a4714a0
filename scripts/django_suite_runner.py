"""Test runner used by ``scripts/django_suite.py`` inside Django's own test suite.

It is Django's ``DiscoverRunner`` with a result class that appends one JSON
line per test outcome to the file named by ``PGRP_SUITE_RESULTS``, as soon as
the outcome is known. A run killed by its timeout therefore still leaves every
result it produced. With ``--parallel`` the workers' events are replayed in
the parent process, so only the parent writes.

``PGRP_SUITE_START_METHOD`` (``fork`` or ``spawn``) chooses how the parallel
workers start.

``SIGUSR1`` dumps every thread's stack (all processes of the group receive it):
the driver sends it before killing a run that hangs, to say where it hung.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import signal
import sys
import unittest
from typing import Any

from django.test.runner import DiscoverRunner

RESULTS_ENV = "PGRP_SUITE_RESULTS"
START_METHOD_ENV = "PGRP_SUITE_START_METHOD"
# Worst outcome wins when one test reports several (subtests).
_RANK = {"passed": 0, "expected_failure": 0, "skipped": 0, "failed": 1, "errored": 2}


def _kind(test: Any) -> str:
    """Which tests reach the release path: TestCase wraps each in atomic()."""
    from django.test import TestCase, TransactionTestCase

    if isinstance(test, TestCase):
        return "atomic"
    if isinstance(test, TransactionTestCase):
        return "transactional"
    return "no_db"


class RecordingResult(unittest.TextTestResult):
    """``TextTestResult`` that also records each outcome as a JSON line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = os.environ.get(RESULTS_ENV)
        # Line-buffered: a killed run keeps everything written so far.
        self._sink = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def _record(self, test: Any, outcome: str, detail: str = "") -> None:
        if self._sink is None:
            return
        entry = {"test": test.id(), "outcome": outcome, "kind": _kind(test)}
        if detail:
            entry["detail"] = detail[-3000:]
        self._sink.write(json.dumps(entry) + "\n")

    def addSuccess(self, test: Any) -> None:  # noqa: N802 - unittest API
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:  # noqa: N802 - unittest API
        super().addFailure(test, err)
        self._record(test, "failed", self.failures[-1][1])

    def addError(self, test: Any, err: Any) -> None:  # noqa: N802 - unittest API
        super().addError(test, err)
        self._record(test, "errored", self.errors[-1][1])

    def addSkip(self, test: Any, reason: str) -> None:  # noqa: N802 - unittest API
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:  # noqa: N802 - unittest API
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test: Any) -> None:  # noqa: N802 - unittest API
        super().addUnexpectedSuccess(test)
        self._record(test, "failed", "unexpected success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:  # noqa: N802 - unittest API
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            listing = self.failures if failed else self.errors
            self._record(test, "failed" if failed else "errored", listing[-1][1])


class RecordingRunner(DiscoverRunner):
    """``DiscoverRunner`` whose results land in ``PGRP_SUITE_RESULTS``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        method = os.environ.get(START_METHOD_ENV)
        if method:
            # Before the parallel suite is built: it reads the start method.
            multiprocessing.set_start_method(method, force=True)

    def get_resultclass(self) -> Any:
        return super().get_resultclass() or RecordingResult


def merge(outcomes: dict[str, dict[str, str]], entry: dict[str, str]) -> None:
    """Fold one JSON line into ``outcomes`` (worst outcome per test wins)."""
    name = entry["test"]
    previous = outcomes.get(name)
    if previous is None or _RANK[entry["outcome"]] > _RANK[previous["outcome"]]:
        outcomes[name] = entry
