"""session_context() and the replay option: every borrow carries its borrower's values."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, request_started
from django.db import DataError, connections, transaction

from django_pg_real_pool import SessionContextError, pinned, session_context, task_scope
from django_pg_real_pool._settings import parse_settings
from tests.support.aliases import extra_alias
from tests.support.concurrent import in_thread
from tests.support.pgstat import admin_dsn, backend_gone, statement_counts, wait_until
from tests.support.wrappers import SINGLE, assert_released

ROLE = "pgrp_replay_role"
REPLAYING = {"default": "tenant_replay", "djpool": "tenant_replay_dj"}
TENANT = "app.tenant_id"


@pytest.fixture(scope="module", autouse=True)
def replay_role(django_db_blocker: Any) -> None:
    with django_db_blocker.unblock(), psycopg.connect(admin_dsn(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone():
            conn.execute(f"CREATE ROLE {ROLE} NOLOGIN")


@pytest.fixture
def single(engine: str) -> Iterator[str]:
    """An alias of ``engine`` whose pool has ONE connection."""
    alias = SINGLE[engine]
    connections[alias].close()
    yield alias
    connections[alias].close()


@pytest.fixture
def replaying(engine: str) -> Iterator[str]:
    """A one-connection alias of ``engine`` with the replay option on
    (``["search_path", "role", "app.*"]``, see tests/settings.py)."""
    alias = REPLAYING[engine]
    connections[alias].close()
    yield alias
    connections[alias].close()


def query(alias: str, sql: str, params: Any = None) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] if cursor.description else None


def seen(alias: str) -> tuple[Any, str, str]:
    """(app.tenant_id, current_user, search_path) as the server reports them."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('app.tenant_id', true), current_user, "
            "current_setting('search_path')"
        )
        row = cursor.fetchone()
    return row[0] or None, row[1], row[2]


def login_user(alias: str) -> str:
    return str(connections[alias].settings_dict["USER"])


DEFAULT_PATH = '"$user", public'


# -- session_context --------------------------------------------------------------


def test_context_values_apply_to_borrowed_connections_only_inside(engine: str) -> None:
    with session_context(
        engine, search_path=["tenant_a", "public"], role=ROLE, settings={TENANT: "7"}
    ):
        assert seen(engine) == ("7", ROLE, '"tenant_a", "public"')
        assert connections[engine].connection is None  # released as usual
        assert seen(engine) == ("7", ROLE, '"tenant_a", "public"')
    assert seen(engine) == (None, login_user(engine), DEFAULT_PATH)


def test_same_backend_gets_each_borrowers_values(single: str) -> None:
    backend = query(single, "SELECT pg_backend_pid()")
    for tenant in ("1", "2", "1"):
        with session_context(single, settings={TENANT: tenant}):
            assert query(single, "SELECT pg_backend_pid()") == backend
            assert seen(single)[0] == tenant
        assert seen(single)[0] is None
    assert query(single, "SELECT pg_backend_pid()") == backend


def test_nested_blocks_override_and_restore(engine: str) -> None:
    with session_context(engine, role=ROLE, settings={TENANT: "outer", "app.region": "eu"}):
        with session_context(engine, settings={TENANT: "inner"}):
            assert seen(engine)[:2] == ("inner", ROLE)
            assert query(engine, "SELECT current_setting('app.region')") == "eu"
            with session_context(engine, settings={"app.region": None}):
                assert query(engine, "SELECT current_setting('app.region', true)") in ("", None)
        assert seen(engine)[:2] == ("outer", ROLE)
    assert seen(engine)[:2] == (None, login_user(engine))


def test_decorator_applies_per_call(engine: str) -> None:
    @session_context(engine, settings={TENANT: "42"}, role=ROLE)
    def work() -> tuple[Any, str, str]:
        return seen(engine)

    assert work()[:2] == ("42", ROLE)
    assert work()[:2] == ("42", ROLE)
    assert seen(engine)[:2] == (None, login_user(engine))


def test_held_connection_gets_values_at_block_entry_and_exit(engine: str) -> None:
    with transaction.atomic(using=engine):
        assert seen(engine)[0] is None
        with session_context(engine, settings={TENANT: "9"}):
            assert seen(engine)[0] == "9"
        assert seen(engine)[0] is None
    with pinned(using=engine), session_context(engine, settings={TENANT: "10"}):
        assert seen(engine)[0] == "10"
    assert_released(engine)
    assert seen(engine)[0] is None


def test_rolled_back_transaction_does_not_leave_values_behind(single: str) -> None:
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=single):
        with session_context(single, settings={TENANT: "rolled-back"}):
            assert seen(single)[0] == "rolled-back"
            raise ZeroDivisionError
    # The transaction's rollback undid the set_config: the engine checks again.
    with session_context(single, settings={TENANT: "rolled-back"}):
        assert seen(single)[0] == "rolled-back"
    assert seen(single)[0] is None


def test_plain_thread_does_not_inherit_the_context(engine: str) -> None:
    with session_context(engine, settings={TENANT: "5"}):
        assert in_thread(lambda: seen(engine)[0]) is None
        # A copied context carries it.
        assert in_thread(lambda: seen(engine)[0], contextvars.copy_context()) == "5"


def test_decorated_coroutine_carries_the_context(engine: str) -> None:
    @session_context(engine, settings={TENANT: "coro"})
    async def view() -> Any:
        return await sync_to_async(lambda: seen(engine)[0])()

    assert async_to_sync(view)() == "coro"
    assert seen(engine)[0] is None


@pytest.mark.parametrize("thread_sensitive", [True, False])
def test_context_follows_sync_to_async(engine: str, thread_sensitive: bool) -> None:
    def probe() -> Any:
        try:
            return seen(engine)[0]
        finally:
            connections[engine].close()

    async def view() -> Any:
        with session_context(engine, settings={TENANT: "async"}):
            return await sync_to_async(probe, thread_sensitive=thread_sensitive)()

    assert async_to_sync(view)() == "async"
    assert seen(engine)[0] is None


# -- the replay option -------------------------------------------------------------


def test_plain_set_statements_are_replayed_instead_of_pinned(replaying: str) -> None:
    wrapper = connections[replaying]
    query(replaying, "SET search_path TO tenant_b, public")
    query(replaying, "SET ROLE " + ROLE)
    query(replaying, "SELECT set_config('app.tenant_id', %s, false)", ["11"])
    assert wrapper.connection is None, wrapper.lease_holders()
    assert seen(replaying) == ("11", ROLE, "tenant_b, public")
    # Another borrower of the same backend (another thread) gets the defaults.
    assert in_thread(lambda: seen(replaying)) == (None, login_user(replaying), DEFAULT_PATH)
    assert seen(replaying) == ("11", ROLE, "tenant_b, public")
    connections[replaying].close()
    assert seen(replaying) == (None, login_user(replaying), DEFAULT_PATH)


@pytest.mark.parametrize(
    ("sql", "params", "probe"),
    [
        ("SET search_path = \"Tenant_C\", 'x', public", None, "SHOW search_path"),
        ("SET SESSION search_path TO DEFAULT", None, "SHOW search_path"),
        ("set app.tenant_id to Mixed_Case", None, "SELECT current_setting('app.tenant_id')"),
        ("SET app.tenant_id = 42", None, "SELECT current_setting('app.tenant_id')"),
        ("SET app.tenant_id = 'it''s'", None, "SELECT current_setting('app.tenant_id')"),
        ("SET role = " + ROLE, None, "SELECT current_user"),
        ("SET app.tenant_id = %s", ["bound"], "SELECT current_setting('app.tenant_id')"),
        ("SET search_path TO %s, public", ["Tenant_D"], "SHOW search_path"),
        ("SET ROLE NONE", None, "SELECT current_user"),
        (
            "SELECT pg_catalog.set_config(%(name)s, %(value)s, false)",
            {"name": "app.tenant_id", "value": "named"},
            "SELECT current_setting('app.tenant_id')",
        ),
        (
            "SELECT set_config('app.a', %s, false), set_config('app.tenant_id', %s, false)",
            ["1", "two"],
            "SELECT current_setting('app.a') || current_setting('app.tenant_id')",
        ),
    ],
)
def test_replayed_statement_gives_what_the_statement_gives(
    replaying: str, sql: str, params: Any, probe: str
) -> None:
    # What the statement itself leaves on a session of its own (client-side
    # binding, as Django sends it).
    with psycopg.connect(admin_dsn(), autocommit=True, cursor_factory=psycopg.ClientCursor) as own:
        own.execute(sql, params)
        row = own.execute(probe).fetchone()
        expected = row[0] if row else None
    query(replaying, sql, params)
    assert connections[replaying].connection is None, connections[replaying].lease_holders()
    # Another borrow of the one connection: the value comes from the context.
    assert in_thread(lambda: query(replaying, "SELECT 1")) == 1
    assert query(replaying, probe) == expected


def test_recorded_state_ends_with_the_request_on_a_reused_thread(replaying: str) -> None:
    # A WSGI server runs request after request on one thread, in one context.
    def request(tenant: str | None) -> Any:
        request_started.send(sender=None)
        try:
            if tenant is not None:
                query(replaying, "SELECT set_config('app.tenant_id', %s, false)", [tenant])
            return seen(replaying)[0]
        finally:
            request_finished.send(sender=None)

    assert in_thread(lambda: [request("1"), request(None), request("2"), request(None)]) == [
        "1",
        None,
        "2",
        None,
    ]


def test_reset_clears_replayed_keys(replaying: str) -> None:
    query(replaying, "SET app.tenant_id = '3'")
    query(replaying, "SET ROLE " + ROLE)
    assert seen(replaying)[:2] == ("3", ROLE)
    query(replaying, "RESET app.tenant_id")
    query(replaying, "RESET ROLE")
    assert seen(replaying)[:2] in ((None, login_user(replaying)), ("", login_user(replaying)))
    assert connections[replaying].connection is None


def test_set_local_keeps_transaction_scope(replaying: str) -> None:
    with transaction.atomic(using=replaying):
        query(replaying, "SET LOCAL app.tenant_id = '4'")
        query(replaying, "SELECT set_config('app.region', 'x', true)")
        assert seen(replaying)[0] == "4"
    assert seen(replaying)[0] is None
    assert query(replaying, "SELECT current_setting('app.region', true)") in ("", None)


def test_statements_the_option_does_not_list_keep_pinning(replaying: str) -> None:
    backend = query(replaying, "SELECT pg_backend_pid()")
    query(replaying, "SET statement_timeout = 1234")
    assert connections[replaying].lease_holders().get("session_state") == "SET"
    connections[replaying].close()
    assert query(replaying, "SELECT pg_backend_pid()") == backend
    assert query(replaying, "SHOW statement_timeout") == "0"


# -- round trips ---------------------------------------------------------------


def _context_statements(admin: psycopg.Connection[Any]) -> int:
    return sum(c for q, c in statement_counts(admin).items() if q.startswith("SELECT set_config("))


def test_round_trips_same_tenant_zero_alternating_at_most_one(
    single: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    query(single, "SELECT 1")
    admin.execute("SELECT pg_stat_statements_reset()")
    with session_context(single, settings={TENANT: "1"}):
        for _ in range(50):
            assert seen(single)[0] == "1"
    # One to set the tenant on the one connection, none for the 49 borrows after.
    assert _context_statements(admin) == 1, statement_counts(admin)
    admin.execute("SELECT pg_stat_statements_reset()")
    for i in range(50):
        with session_context(single, settings={TENANT: str(i % 2)}):
            assert seen(single)[0] == str(i % 2)
    # Leaving the last block sends nothing: the connection is not held.
    assert _context_statements(admin) == 50


def test_plain_set_that_ran_is_not_sent_again(
    replaying: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    query(replaying, "SELECT 1")
    admin.execute("SELECT pg_stat_statements_reset()")
    query(replaying, "SET search_path TO tenant_b, public")
    query(replaying, "SET ROLE " + ROLE)
    for _ in range(20):
        assert seen(replaying)[1:] == (ROLE, "tenant_b, public")
    # The statements ran on the one connection: the borrows after them send nothing.
    assert _context_statements(admin) == 0, statement_counts(admin)
    # Inside a transaction a rollback could undo a SET: the next borrow sets it again.
    with transaction.atomic(using=replaying):
        query(replaying, "SET search_path TO tenant_c, public")
    assert seen(replaying)[2] == "tenant_c, public"
    assert _context_statements(admin) == 1, statement_counts(admin)


# -- failure and bad input -------------------------------------------------------


def test_failed_apply_discards_the_connection_and_names_alias_and_setting(
    single: str, admin: psycopg.Connection[Any]
) -> None:
    backend = query(single, "SELECT pg_backend_pid()")
    with (
        session_context(single, role="pgrp_no_such_role"),
        pytest.raises(SessionContextError, match=rf"alias '{single}'.*role='pgrp_no_such_role'"),
    ):
        query(single, "SELECT 1")
    assert connections[single].connection is None
    assert wait_until(lambda: backend_gone(admin, backend))
    assert seen(single) == (None, login_user(single), DEFAULT_PATH)
    assert_released(single)


def test_failed_apply_on_a_held_connection_fails_the_block_entry(single: str) -> None:
    with pytest.raises(SessionContextError, match="pgrp_no_such_role"):
        with transaction.atomic(using=single):
            query(single, "SELECT 1")
            with session_context(single, role="pgrp_no_such_role"):
                pytest.fail("the block ran without its role")
    assert seen(single) == (None, login_user(single), DEFAULT_PATH)
    assert_released(single)


def test_error_inside_a_block_in_a_transaction_is_the_error_raised(single: str) -> None:
    with pytest.raises(DataError, match="division by zero"):
        with transaction.atomic(using=single), session_context(single, role=ROLE):
            assert seen(single)[1] == ROLE
            # The transaction fails: leaving the block must not hide this error
            # behind one from setting the role back.
            query(single, "SELECT 1 / 0")
    assert seen(single) == (None, login_user(single), DEFAULT_PATH)
    assert_released(single)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"settings": {"app tenant": "1"}}, ValueError, "not a setting name"),
        ({"settings": {"app.x;drop": "1"}}, ValueError, "not a setting name"),
        ({"settings": {"session_authorization": "x"}}, ValueError, "not a setting name"),
        ({"settings": {TENANT: object()}}, TypeError, "must be a str"),
        ({"settings": ["app.x"]}, TypeError, "dict of setting name"),
        ({"role": 5}, TypeError, "role's name"),
        ({"search_path": 5}, TypeError, "schema names"),
        ({"search_path": ""}, ValueError, "schema names"),
        ({"using": 5}, TypeError, "database alias"),
    ],
)
def test_bad_input_is_rejected_before_anything_runs(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        session_context(**kwargs)


def test_unknown_alias_and_unpooled_alias_are_rejected() -> None:
    from django.utils.connection import ConnectionDoesNotExist

    with pytest.raises(ConnectionDoesNotExist), session_context("nope"):
        pass
    with (
        extra_alias("unpooled", "default", OPTIONS={"pool": False}) as alias,
        pytest.raises(ImproperlyConfigured, match="not a pooled alias"),
        session_context(alias),
    ):
        pass


@pytest.mark.parametrize("replay", ["app.*", ["app x"], [5], ["*"]])
def test_bad_replay_option_names_the_setting(replay: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"\['real_pool'\]\['replay'\]"):
        parse_settings("tenants", {"real_pool": {"replay": replay}})


# -- task brackets ------------------------------------------------------------------


def test_task_bracket_clears_and_reports_a_context_left_entered(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    scope = task_scope("tenant-task")
    with scope:
        session_context(engine, settings={TENANT: "leaked"}).__enter__()
        assert seen(engine)[0] == "leaked"
    assert [leak.alias for leak in scope.leaks] == [engine]
    assert "session_context() left entered (app.tenant_id='leaked')" in scope.leaks[0].describe()
    assert any(r.levelname == "ERROR" and "tenant-task" in r.getMessage() for r in caplog.records)
    # The next task on this thread starts from the defaults.
    with task_scope("next-task") as scope:
        assert seen(engine)[0] is None
    assert scope.leaks == []


def test_task_bracket_ends_recorded_state_silently(replaying: str) -> None:
    with task_scope("replaying-task") as scope:
        query(replaying, "SET app.tenant_id = 'task-1'")
        assert seen(replaying)[0] == "task-1"
    assert scope.leaks == []
    assert seen(replaying)[0] is None


def test_task_bracket_keeps_the_context_it_started_in(engine: str) -> None:
    with session_context(engine, settings={TENANT: "cron"}):
        with task_scope("per-tenant-job") as scope:
            assert seen(engine)[0] == "cron"
        assert scope.leaks == []
        assert seen(engine)[0] == "cron"


def test_reset_all_clears_replayed_keys_and_keeps_todays_policy(replaying: str) -> None:
    query(replaying, "SET app.tenant_id = 'before-reset'")
    assert seen(replaying)[0] == "before-reset"
    query(replaying, "RESET ALL")
    # RESET ALL also reset Django's own set-up (the time zone): pinned, then reset.
    assert connections[replaying].lease_holders().get("session_state") == "RESET"
    assert seen(replaying)[0] is None
    connections[replaying].close()
    assert seen(replaying)[0] is None
    assert query(replaying, "SHOW TIME ZONE") == connections[replaying].timezone_name


def test_known_transaction_mode_pooler_is_refused(single: str) -> None:
    # What the pooler check (_pooler.py) records for a connection behind one.
    with pinned(using=single):
        query(single, "SELECT 1")
        state = connections[single]._lease_state
        state.pooler = True
        try:
            with (
                pytest.raises(SessionContextError, match="transaction-mode pooler"),
                session_context(single, settings={TENANT: "1"}),
            ):
                pass
        finally:
            state.pooler = False
        assert seen(single)[0] is None
