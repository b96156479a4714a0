"""task_scope(): the public bracket, as a context manager and as a decorator."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.test import override_settings

from django_pg_real_pool import LeakedConnection, pinned, task_scope
from tests.support.pgstat import idle_in_transaction, pool_counts, wait_until
from tests.testapp.models import Item

LOGGER = "django_pg_real_pool.bracket"


def leak_manual_transaction(alias: str, name: str) -> None:
    connections[alias].set_autocommit(False)
    Item.objects.using(alias).create(name=name)


def leak_open_cursor(alias: str, name: str) -> None:
    connections[alias].cursor().execute("SELECT %s", [name])


def leak_session_state(alias: str, name: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SET search_path TO pg_catalog")


def leak_pinned(alias: str, name: str) -> None:
    pinned(using=alias).__enter__()
    Item.objects.using(alias).count()


LEAKS: dict[str, tuple[Callable[[str, str], None], str]] = {
    "manual transaction": (leak_manual_transaction, "autocommit left off"),
    "open cursor": (leak_open_cursor, "cursor(s) not closed"),
    "session state": (leak_session_state, "session state set outside pinned()"),
    "pinned": (leak_pinned, "pinned() block not exited"),
}


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def assert_clean_on_server(alias: str, admin: psycopg.Connection[Any]) -> None:
    assert connections[alias].connection is None, connections[alias].lease_holders()
    assert wait_until(lambda: pool_counts(alias)[0] == pool_counts(alias)[1], timeout=5)
    assert not idle_in_transaction(admin)
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone() == ('"$user", public',)


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_scope_exit_repairs_and_reports_each_leak(
    case: str, engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    leak, described = LEAKS[case]
    caplog.set_level(logging.ERROR, logger=LOGGER)
    with task_scope("cron.nightly", task_id="run-7") as scope:
        leak(engine, "uncommitted")
    assert [leak.alias for leak in scope.leaks] == [engine]
    [record] = records(caplog)
    assert "cron.nightly (id run-7) leaked on database alias" in record.getMessage()
    assert described in record.getMessage()
    assert record.pgrp_task == "cron.nightly"  # type: ignore[attr-defined]
    assert_clean_on_server(engine, admin)
    assert not Item.objects.using(engine).filter(name="uncommitted").exists()


def test_clean_scope_reports_nothing_and_commits(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    with task_scope("clean") as scope, transaction.atomic(using=engine):
        Item.objects.using(engine).create(name="kept")
    assert scope.leaks == []
    assert records(caplog) == []
    assert Item.objects.using(engine).filter(name="kept").exists()


def test_scope_entry_repairs_what_earlier_code_left(
    engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    leak_manual_transaction(engine, "before")
    with task_scope("after-boot"):
        assert connections[engine].get_autocommit()
        Item.objects.using(engine).count()
    [record] = records(caplog)
    assert "before the task started" in record.getMessage()
    assert_clean_on_server(engine, admin)
    assert not Item.objects.using(engine).filter(name="before").exists()


def test_strict_scope_raises_after_repairing(engine: str, admin: psycopg.Connection[Any]) -> None:
    with pytest.raises(LeakedConnection, match=r"strict.task \(id 9\) ended holding database"):
        with task_scope("strict.task", task_id="9", strict=True):
            leak_manual_transaction(engine, "strict")
    assert_clean_on_server(engine, admin)
    assert not Item.objects.using(engine).filter(name="strict").exists()


def test_strict_setting_applies_and_the_bodys_exception_wins(
    engine: str, admin: psycopg.Connection[Any]
) -> None:
    with override_settings(REAL_POOL_STRICT=True):
        with pytest.raises(LeakedConnection, match="cursor"):
            with task_scope("by-setting"):
                leak_open_cursor(engine, "x")
        with pytest.raises(ValueError, match="own error"):
            with task_scope("raises"):
                leak_manual_transaction(engine, "raised")
                raise ValueError("own error")
    assert_clean_on_server(engine, admin)


def test_nested_scope_leaves_the_outer_transaction_alone(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    @task_scope("inner")
    def helper() -> None:
        Item.objects.using(engine).create(name="inner")

    with task_scope("outer"):
        with transaction.atomic(using=engine):
            Item.objects.using(engine).create(name="outer")
            helper()
            assert connections[engine].in_atomic_block
    assert records(caplog) == []
    assert Item.objects.using(engine).filter(name__in=["outer", "inner"]).count() == 2


def test_decorator_brackets_each_call_of_an_executor(
    engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    threads: set[int] = set()
    max_size = connections[engine].settings_dict["OPTIONS"].get("pool", {}).get("max_size", 4)

    @task_scope("executor.job")
    def job(n: int) -> int:
        threads.add(threading.get_ident())
        if n % 2:
            leak_manual_transaction(engine, f"job-{n}")
        return Item.objects.using(engine).filter(name=f"job-{n}").count()

    # More jobs than connections: leaked ones must come back or the pool
    # would run dry and later jobs time out.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(job, range(4 * max_size)))
    assert len(threads) > 1
    assert sum(results) == 2 * max_size  # each odd job saw its own uncommitted row
    assert len(records(caplog)) == 2 * max_size
    assert not idle_in_transaction(admin)
    assert not Item.objects.using(engine).filter(name__startswith="job-").exists()
    assert wait_until(lambda: pool_counts(engine)[0] == pool_counts(engine)[1], timeout=5)


def test_sync_to_async_under_asyncio_run(
    engine: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    @task_scope("async.part")
    def orm_work() -> None:
        leak_open_cursor(engine, "async")

    async def main() -> None:
        await sync_to_async(orm_work)()

    asyncio.run(main())
    [record] = records(caplog)
    assert "async.part" in record.getMessage()
    assert not idle_in_transaction(admin)


def test_misuse_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="coroutine function"):

        @task_scope("coro")
        async def coro() -> None:
            pass

    with pytest.raises(TypeError, match=r'@task_scope\("my-task"\)'):
        task_scope(lambda: None)  # type: ignore[arg-type]
