"""``pool_status --advise``: pool sizes from the engine's own measurements."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections
from django.test.utils import modify_settings

from django_pg_real_pool import _advise

HOLD_S = 0.004


@pytest.fixture(autouse=True)
def app_installed() -> Iterator[None]:
    with modify_settings(INSTALLED_APPS={"append": "django_pg_real_pool"}):
        yield


def pool_status(*args: str) -> str:
    out = StringIO()
    call_command("pool_status", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def load(engine: str) -> Iterator[str]:
    """8 threads borrowing ``engine``'s pool of 4, each query holding a
    connection about HOLD_S, until the test ends."""
    stop = threading.Event()

    def borrow() -> None:
        try:
            while not stop.is_set():
                with connections[engine].cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(%s)", [HOLD_S])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=borrow) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        yield engine
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def test_erlang_c_matches_the_textbook() -> None:
    # 10 Erlangs on 11 and 12 servers: the classic call-centre table.
    assert round(_advise.erlang_c(11, 10.0), 3) == 0.682
    assert round(_advise.erlang_c(12, 10.0), 3) == 0.449
    assert _advise.erlang_c(10, 10.0) == 1.0
    assert math.isinf(_advise.mean_wait(3, 3.5, 0.01))
    # Sharing one queue needs fewer connections than a queue per process.
    per_process = _advise.size_for(0.8, 0.005, 0.0005)
    assert _advise.size_for(0.8 * 16, 0.005, 0.0005) < 16 * per_process


def test_advice_from_this_process_under_load(load: str) -> None:
    data = json.loads(
        pool_status("--advise", "--window", "1", "--database", load, "--target-wait", "1", "--json")
    )
    advice = data[load]
    # Little's law on what the engine measured.
    assert advice["rate"] > 50
    assert advice["hold"] >= HOLD_S
    assert advice["load"] == pytest.approx(advice["rate"] * advice["hold"])
    assert advice["current_size"] == 4
    # 8 threads that hold about all the time they run: the pool of 4 is saturated
    # (everything queues), so the demand is censored and the size a lower bound.
    assert advice["max_size"] >= math.ceil(advice["load"])
    assert advice["queued_share"] > 0.5
    assert advice["confidence"] == "low"
    assert "lower bound" in " ".join(advice["reasons"])


def test_advice_from_snapshot_files_of_a_fleet(load: str, tmp_path: Path) -> None:
    before = tmp_path / "before.json"
    before.write_text(pool_status("--json", "--database", load))
    # The serving process's traffic in between: wait for enough borrows.
    assert _wait_for_borrows(load, 300)
    after = tmp_path / "after.json"
    after.write_text(pool_status("--json", "--database", load))
    text = pool_status(
        "--advise", "--snapshots", str(before), str(after), "--processes", "16", "--database", load
    )
    assert f"Sizing advice for alias {load!r}" in text
    advice = json.loads(
        pool_status(
            "--advise",
            "--snapshots",
            str(before),
            str(after),
            "--processes",
            "16",
            "--database",
            load,
            "--json",
        )
    )[load]
    assert advice["processes"] == 16
    assert advice["fleet_direct"] == 16 * advice["max_size"]
    assert advice["fleet_pooled"] <= advice["fleet_direct"]
    assert f"{advice['fleet_pooled']} behind one transaction-mode PgBouncer" in text


def _wait_for_borrows(alias: str, count: int) -> bool:
    from django_pg_real_pool import telemetry
    from tests.support.pgstat import wait_until

    key = telemetry.ENGINE_PREFIX + "acquires"
    start = telemetry.snapshot()[alias][key]
    return wait_until(lambda: telemetry.snapshot()[alias][key] - start >= count, timeout=20)
