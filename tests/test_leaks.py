"""Leak detection: a connection held outside atomic()/pinned() past the threshold is
reported once per borrow, with the stack that borrowed it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from time import monotonic

import pytest
from django.db import connections, transaction

from django_pg_real_pool import _leaks, pinned, telemetry

THRESHOLD = 0.2


def scan_later(seconds: float = 60.0) -> list[_leaks.LeakReport]:
    """Scan as the detector would ``seconds`` from now (twice: a leak is
    confirmed by two scans in a row)."""
    at = monotonic() + seconds
    return _leaks.scan(at) + _leaks.scan(at)


class Collect(logging.Handler):
    """Keeps the detector's records and signals the first one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.first.set()


@pytest.fixture
def reports() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("django_pg_real_pool.leaks")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _set_threshold(alias: str, value: float | None) -> None:
    wrapper = connections[alias]
    # Django's test database set-up ends with a bare ensure_connection().
    wrapper.close()
    options = wrapper.settings_dict["OPTIONS"]
    if value is None:
        options.pop("real_pool", None)
    else:
        options["real_pool"] = {"leak_threshold": value}
    # Settings are read at the wrapper's next borrow.
    wrapper._lease_settings = None


@pytest.fixture
def leak_alias(engine: str) -> Iterator[str]:
    """``engine`` with ``leak_threshold`` set, as in the settings; detector stopped after."""
    _set_threshold(engine, THRESHOLD)
    try:
        yield engine
    finally:
        _leaks.shutdown()
        connections[engine].close()
        _set_threshold(engine, None)


def test_held_cursor_reported_once_with_the_borrowing_stack(
    leak_alias: str, reports: Collect
) -> None:
    before = telemetry.snapshot()[leak_alias][telemetry.LEAKS_DETECTED]
    _leaks.watch_configured()  # what the app's ready() does
    assert _leaks.is_running()
    cursor = connections[leak_alias].cursor()  # BORROW-LINE
    cursor.execute("SELECT 1")
    assert reports.first.wait(10), "no leak report"
    _leaks.shutdown()
    record = reports.records[0]
    message = record.getMessage()
    assert f"database alias {leak_alias!r}" in message
    assert "held by cursors=1" in message
    assert record.pgrp_alias == leak_alias  # type: ignore[attr-defined]
    assert record.pgrp_held_seconds >= THRESHOLD  # type: ignore[attr-defined]
    assert record.pgrp_thread == threading.current_thread().name  # type: ignore[attr-defined]
    line = _line_of("# BORROW-LINE")
    assert f'{__file__}", line {line}, in test_held_cursor_reported_once' in message
    # Once per borrow: later scans say nothing about the same borrow.
    assert scan_later() == []
    assert len(reports.records) == 1
    assert telemetry.snapshot()[leak_alias][telemetry.LEAKS_DETECTED] - before == 1
    cursor.close()
    assert connections[leak_alias].connection is None


def test_each_borrow_is_reported_separately(leak_alias: str, reports: Collect) -> None:
    for _ in range(2):
        cursor = connections[leak_alias].cursor()
        cursor.execute("SELECT 1")
        assert _leaks.scan(monotonic() + 60) == []  # first sighting
        found = _leaks.scan(monotonic() + 60)  # confirmed
        assert [r.alias for r in found] == [leak_alias]
        assert scan_later() == []
        cursor.close()
    assert len(reports.records) == 2


def test_not_reported_before_the_threshold(leak_alias: str) -> None:
    with connections[leak_alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        early = connections[leak_alias]._lease_acquired_at + THRESHOLD / 2
        assert _leaks.scan(early) + _leaks.scan(early) == []
        assert scan_later() != []


def test_atomic_and_pinned_are_not_leaks(leak_alias: str) -> None:
    with transaction.atomic(using=leak_alias):
        with connections[leak_alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        assert scan_later() == []
    with pinned(using=leak_alias):
        with connections[leak_alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        assert scan_later() == []


def test_manual_transaction_is_a_leak(leak_alias: str) -> None:
    wrapper = connections[leak_alias]
    wrapper.set_autocommit(False)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        (report,) = scan_later()
        assert report.holders.get("autocommit_off") is True
        assert report.holders.get("server_transaction") == "INTRANS"
        assert "test_manual_transaction_is_a_leak" in (report.acquired_at or "")
    finally:
        wrapper.rollback()
        wrapper.set_autocommit(True)
    assert wrapper.connection is None


def test_off_by_default_no_thread_no_stack(engine: str) -> None:
    assert connections[engine].settings_dict["OPTIONS"].get("real_pool") is None
    _leaks.watch_configured()
    assert not _leaks.is_running()
    with connections[engine].cursor() as cursor:
        cursor.execute("SELECT 1")
        assert connections[engine]._lease_site is None
        assert scan_later(3600) == []


def test_fork_child_runs_its_own_detector(leak_alias: str) -> None:
    _leaks.watch(leak_alias, THRESHOLD)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report and leave without any clean-up
        os.write(write_end, b"1" if _leaks.is_running() else b"0")
        os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def _line_of(marker: str) -> int:
    with open(__file__) as source:
        for number, text in enumerate(source, 1):
            if marker in text and "_line_of" not in text:
                return number
    raise AssertionError(marker)


def test_detector_starts_at_the_first_borrow(leak_alias: str, reports: Collect) -> None:
    assert not _leaks.is_running()
    cursor = connections[leak_alias].cursor()
    try:
        cursor.execute("SELECT 1")
        assert _leaks.is_running()
        assert reports.first.wait(10)
    finally:
        cursor.close()
