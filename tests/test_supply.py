"""One alias's connection supply (``_supply.py``), through its public verbs.

Each test uses its own one-connection pool, so that "parked", "in the pool"
and "lent" are unambiguous, real threads borrow, and the server says which
backend served what.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import OperationalError

from django_pg_real_pool import _bracket, _counters, _strays
from django_pg_real_pool._supply import Supply
from django_pg_real_pool._waiters import HeldBox
from django_pg_real_pool.errors import PoolExhausted
from tests.support.inject import Injected, inject
from tests.support.pgstat import backend_gone, wait_until
from tests.support.pgstat import wrapper_backend_pid as pid_of
from tests.support.wrappers import HoldConnection, make_wrapper

POOLS = {
    "django_pg_real_pool": {"OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 5}}},
    "django_pg_real_pool.dj_db_conn_pool": {
        "POOL_OPTIONS": {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    },
}


#: The same pools with a short timeout.
SHORT = {
    "django_pg_real_pool": {"OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 0.5}}},
    "django_pg_real_pool.dj_db_conn_pool": {
        "POOL_OPTIONS": {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.5}
    },
}


@pytest.fixture(params=list(POOLS), ids=["native", "dj_db_conn_pool"])
def tiny(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """Two wrappers (think: two threads' connections) on one one-connection pool."""
    engine: str = request.param
    alias = f"supply-{engine.rsplit('.', 1)[-1]}"
    first = make_wrapper(engine, alias, **POOLS[engine])
    second = make_wrapper(engine, alias, **POOLS[engine])
    try:
        yield first, second
    finally:
        second.close()
        first.close()
        first.close_pool()


def supply_of(wrapper: Any) -> Supply:
    """The alias's supply (after the wrapper's first borrow)."""
    supply: Supply = wrapper._lease_supply
    return supply


def engine_and_alias(wrapper: Any) -> tuple[str, str]:
    return type(wrapper).__module__.removesuffix(".base"), wrapper.alias


def engine_of(wrapper: Any) -> str:
    return "native" if engine_and_alias(wrapper)[0] == "django_pg_real_pool" else "dj"


def parked(wrapper: Any) -> int:
    return int(supply_of(wrapper).stats()["pool_parked"])


def in_pool(wrapper: Any) -> int:
    """Connections resting in the pool itself (not parked, not lent)."""
    stats = supply_of(wrapper).stats()
    return int(stats["pool_available"] - stats["pool_parked"])


def test_a_release_parks_and_the_next_borrow_takes_it(tiny: tuple[Any, Any]) -> None:
    first, second = tiny
    pid = pid_of(first)
    assert first.connection is None
    assert (parked(first), in_pool(first)) == (1, 0)
    # Another wrapper (another thread) gets the same backend from the supply.
    assert pid_of(second) == pid
    assert supply_of(second) is supply_of(first)
    assert (parked(first), in_pool(first)) == (1, 0)
    # Statistics count it available.
    assert supply_of(first).stats()["pool_available"] == 1


def test_native_pool_is_not_asked_again_while_connections_park() -> None:
    wrapper = make_wrapper("django_pg_real_pool", "supply-requests", **POOLS["django_pg_real_pool"])
    try:
        pid = pid_of(wrapper)
        pool = supply_of(wrapper).adapter.pool
        before = pool.get_stats().get("requests_num", 0)
        assert {pid_of(wrapper) for _ in range(20)} == {pid}
        assert pool.get_stats().get("requests_num", 0) == before
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_a_closed_pool_is_freed_without_the_garbage_collector(tiny: tuple[Any, Any]) -> None:
    """close_pool() leaves no reference cycle: the old supply and its adapter
    go as soon as the wrappers have borrowed from the new pool. (Django 6.1's
    test_release_memory_without_garbage_collection found the cycles: the
    adapter and its lane, and the native pool's configure callback holding the
    wrapper that holds the adapter.)"""
    first, second = tiny
    pid_of(first)
    pid_of(second)
    old_supply = weakref.ref(supply_of(first))
    old_adapter = weakref.ref(supply_of(first).adapter)
    gc.disable()
    try:
        first.close_pool()
        # Both wrappers move to the new pool (the second finds the old one closed).
        pid_of(first)
        pid_of(second)
        assert supply_of(first) is supply_of(second)
        assert old_supply() is None
        assert old_adapter() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("engine", list(POOLS), ids=["native", "dj_db_conn_pool"])
def test_a_wrapper_dropped_after_close_pool_is_freed_with_the_closed_pool(engine: str) -> None:
    """Neither the wrapper that created a pool nor the closed pool outlives its
    last user. (django-db-connection-pool's pool creator is a lambda over the
    wrapper that created the pool, and each wrapper's finalizer keeps the
    adapter of its last borrow, hence that pool: the wrapper that created it
    stayed reachable for good, the garbage collector could not free it.)"""
    alias = f"supply-drop-{engine.rsplit('.', 1)[-1]}"
    creator = make_wrapper(engine, alias, **POOLS[engine])
    other = make_wrapper(engine, alias, **POOLS[engine])
    try:
        pid_of(creator)
        pid_of(other)
        old_pool = weakref.ref(supply_of(creator).adapter.pool)
        creator.close_pool()
        gone = weakref.ref(creator)
        del creator
        # The other wrapper moves to the new pool.
        pid_of(other)
        # Django's own wrappers are reference cycles before Django 6.0.
        gc.collect()
        assert gone() is None
        assert old_pool() is None
    finally:
        other.close()
        other.close_pool()


class Borrower:
    """A thread that borrows once through ``wrapper`` (a query, then the
    release) and records the backend, or the exception."""

    def __init__(self, wrapper: Any, hold: threading.Event | None = None) -> None:
        self.wrapper = wrapper
        self.hold = hold
        self.outcome: list[Any] = []
        wrapper.inc_thread_sharing()  # made here, used by the thread
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.hold is None:
                self.outcome.append(pid_of(self.wrapper))
            else:
                with HoldConnection(self.wrapper):
                    self.outcome.append(pid_of(self.wrapper))
                    self.hold.wait(30)
        except BaseException as exc:  # reported by result(), not lost in the thread
            self.outcome.append(exc)

    def result(self) -> Any:
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.wrapper.dec_thread_sharing()
        return self.outcome[0]


def queued(supply: Supply, count: int) -> bool:
    return wait_until(lambda: len(supply.queued()) == count)


@contextmanager
def waiting_behind(holder: Any, waiter: Any) -> Iterator[tuple[int, Supply, Borrower]]:
    """``holder`` holds the pool's only connection while a thread borrowing
    through ``waiter`` queues in the supply; ``holder`` lets go on exit.
    Yields the connection's backend pid, the supply and the borrower."""
    pid = pid_of(holder)
    supply = supply_of(holder)
    with HoldConnection(holder):
        borrower = Borrower(waiter)
        assert queued(supply, 1)
        yield pid, supply, borrower


def test_a_borrower_queues_in_the_supply_and_gets_the_release(tiny: tuple[Any, Any]) -> None:
    holder, waiter = tiny
    pid = pid_of(holder)
    supply = supply_of(holder)
    with HoldConnection(holder):
        assert holder.connection is not None
        borrower = Borrower(waiter)
        # Everything the pool can lend is out: the borrower sleeps in the
        # supply's queue, not in the pool's.
        assert queued(supply, 1)
        stats = supply.stats()
        assert (stats["lane_waiting"], stats["requests_waiting"]) == (1, 1)
        if engine_of(holder) == "native":
            assert supply.adapter.pool.get_stats().get("requests_waiting", 0) == 0
    # The release handed the connection straight over.
    assert borrower.result() == pid
    assert _counters.counters_by_alias()[waiter.alias]["queued"] >= 1
    assert not supply.queued()
    assert (parked(holder), in_pool(holder)) == (1, 0)


def test_without_the_lane_queue_borrowers_wait_in_the_pools_own_queue() -> None:
    """The benchmark-only switch (``Supply.lane_queue``): a borrower that
    finds nothing waits in the pool; a release meanwhile goes to the pool
    (never parked while someone waits there), which hands it over. (Native
    pool only: QueuePool counts no waiters, so the wait cannot be seen.)"""
    engine = "django_pg_real_pool"
    holder, waiter = (make_wrapper(engine, "supply-poolq", **POOLS[engine]) for _ in range(2))
    try:
        pid = pid_of(holder)
        supply = supply_of(holder)
        supply.lane_queue = False
        pool = supply.adapter.pool
        with HoldConnection(holder):
            borrower = Borrower(waiter)
            assert wait_until(lambda: pool.get_stats().get("requests_waiting", 0) == 1)
            assert not supply.queued()
        assert borrower.result() == pid
        assert parked(holder) == 1
    finally:
        waiter.close()
        holder.close()
        holder.close_pool()


def test_the_supply_queue_is_first_come_first_served(tiny: tuple[Any, Any]) -> None:
    holder, first = tiny
    engine, alias = engine_and_alias(holder)
    second = make_wrapper(engine, alias, **POOLS[engine])
    pid = pid_of(holder)
    supply = supply_of(holder)
    release_first = threading.Event()
    try:
        with HoldConnection(holder):
            early = Borrower(first, hold=release_first)
            assert queued(supply, 1)
            late = Borrower(second)
            assert queued(supply, 2)
            assert supply.queued() == [first._lease_box, second._lease_box]
        # The holder's release went to the longest waiter, who holds it now.
        assert wait_until(lambda: early.outcome == [pid])
        assert supply.queued() == [second._lease_box]
        assert late.outcome == []
        release_first.set()
        assert early.result() == pid
        assert late.result() == pid
    finally:
        release_first.set()
        second.close()


@pytest.mark.parametrize("engine", list(SHORT), ids=["native", "dj_db_conn_pool"])
def test_a_borrower_gives_up_in_the_supply_after_the_pool_timeout(engine: str) -> None:
    alias = f"supply-timeout-{engine.rsplit('.', 1)[-1]}"
    holder, waiter = (make_wrapper(engine, alias, **SHORT[engine]) for _ in range(2))
    try:
        pid = pid_of(holder)
        supply = supply_of(holder)
        errors = supply.stats()["requests_errors"]
        with HoldConnection(holder):
            borrower = Borrower(waiter)
            assert queued(supply, 1)
            error = borrower.result()
        assert isinstance(error, PoolExhausted), error
        assert "timeout=0.5s" in str(error)
        assert supply.stats()["requests_errors"] == errors + 1
        assert not supply.queued()
        # Nothing was lost: the connection serves the next borrower.
        assert pid_of(waiter) == pid
    finally:
        waiter.close()
        holder.close()
        holder.close_pool()


def test_max_waiting_bounds_the_supply_queue() -> None:
    # psycopg_pool enforces max_waiting on its own queue only; the borrowers
    # now queue in the supply, which enforces it instead.
    engine = "django_pg_real_pool"
    options = {"OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "max_waiting": 1, "timeout": 5}}}
    holder, waiter, third = (
        make_wrapper(engine, "supply-max-waiting", **options) for _ in range(3)
    )
    try:
        with waiting_behind(holder, waiter) as (pid, supply, borrower):
            stats = supply.stats()
            with pytest.raises(OperationalError, match="1 requests are already waiting") as info:
                pid_of(third)
            assert "DATABASES['supply-max-waiting']['OPTIONS']['pool']['max_waiting']" in str(
                info.value
            )
            assert supply.stats()["requests_errors"] == stats["requests_errors"] + 1
            assert supply.queued() == [waiter._lease_box]
        # The queued borrower was not disturbed.
        assert borrower.result() == pid
    finally:
        for wrapper in (third, waiter, holder):
            wrapper.close()
        holder.close_pool()


def test_a_connection_returned_to_the_pool_nudges_the_queue(tiny: tuple[Any, Any]) -> None:
    holder, waiter = tiny
    with waiting_behind(holder, waiter) as (pid, supply, borrower):
        # Lent PARK_MAX ago: this release goes back through the pool, whose
        # connection the queued borrower is woken to borrow.
        supply.adapter.raw(holder.connection).pgrp_state.lent_at -= _strays.PARK_MAX
    assert borrower.result() == pid
    assert not supply.queued()


def test_a_queued_borrower_gets_the_replacement_of_a_dead_connection(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    holder, waiter = tiny
    with waiting_behind(holder, waiter) as (pid, supply, borrower):
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert wait_until(lambda: backend_gone(admin, pid))
        holder.needs_rollback = False
    # Handed the dead connection, the borrower's health check drops it; the
    # pool opens a replacement, which the borrower waits for in the pool.
    new_pid = borrower.result()
    assert isinstance(new_pid, int), new_pid
    assert new_pid != pid
    assert not supply.queued()


def test_close_pool_sends_queued_borrowers_to_the_new_pool(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    holder, waiter = tiny
    with waiting_behind(holder, waiter) as (pid, supply, borrower):
        holder.close_pool()
        new_pid = borrower.result()
    assert isinstance(new_pid, int), new_pid
    assert new_pid != pid
    assert supply.closed and not supply.queued()
    assert supply_of(waiter) is not supply
    # The connection lent before close_pool() was closed when it came back,
    # not left resting in the closed pool.
    assert wait_until(lambda: backend_gone(admin, pid))


def test_an_asynchronous_exception_in_a_queued_borrower_loses_nothing(
    tiny: tuple[Any, Any],
) -> None:
    holder, waiter = tiny
    with waiting_behind(holder, waiter) as (pid, supply, borrower):
        # Delivered when the borrower next runs Python code: as the release
        # wakes it, with the connection handed over (a task's time limit).
        inject(borrower.thread, Injected)
    assert isinstance(borrower.result(), Injected)
    assert not supply.queued()
    # Passed on (the same backend serves the next borrow), or left in the
    # borrower's box, where the task bracket finds it and discards it.
    box = waiter._lease_box
    if box.conn is None:
        assert pid_of(holder) == pid
    else:
        assert waiter.connection is None
        assert _bracket.inspect(waiter) == ["connection hand-over to or from the pool interrupted"]
        _bracket.repair(waiter)
        assert box.conn is None
        assert isinstance(pid_of(holder), int)
    assert not supply.queued()


def test_get_and_put_borrow_and_return_through_a_box(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    """The verbs themselves: ``get`` fills the box, a clean ``put`` parks
    and empties it, a dirty one resets the session (DISCARD ALL) and returns
    it to the pool."""
    first, _ = tiny
    pid = pid_of(first)
    supply = supply_of(first)
    box, counters = HeldBox(), _counters.new_counters()
    conn = supply.get(box, counters, None)
    raw = supply.adapter.raw(conn)
    assert box.conn is conn and box.supply is supply
    assert raw.info.backend_pid == pid
    assert (counters.acquires, parked(first)) == (1, 0)
    raw.execute("SET application_name = 'dirty'")
    supply.put(conn, box, "SET", counters)
    assert box.conn is None
    assert (counters.resets, parked(first), in_pool(first)) == (1, 0, 1)
    conn = supply.get(box, counters, None)
    assert supply.adapter.raw(conn).execute("SHOW application_name").fetchone() != ("dirty",)
    supply.put(conn, box, None, counters)
    assert (box.conn, parked(first)) == (None, 1)


def test_a_connection_lent_longer_than_park_max_goes_back_through_the_pool(
    tiny: tuple[Any, Any],
) -> None:
    first, _ = tiny
    with first.cursor() as cursor:
        cursor.execute("SELECT 1")
        # Lent by the pool PARK_MAX ago: its release visits the pool
        # (max_lifetime, drain() and recycle are enforced there).
        supply_of(first).adapter.raw(first.connection).pgrp_state.lent_at -= _strays.PARK_MAX
    assert (parked(first), in_pool(first)) == (0, 1)
    # The next borrow comes from the pool, restarting the clock.
    pid_of(first)
    assert (parked(first), in_pool(first)) == (1, 0)


def test_the_sweeper_sends_back_connections_parked_too_long(tiny: tuple[Any, Any]) -> None:
    first, _ = tiny
    first.ensure_connection()
    raw = supply_of(first).adapter.raw(first.connection)
    first.close()
    assert parked(first) == 1
    raw.pgrp_state.returned_at -= _strays.PARK_MAX
    # Nothing else runs: the sweeper thread notices within half PARK_MAX.
    assert wait_until(lambda: in_pool(first) == 1, timeout=5)
    assert parked(first) == 0
    assert any(t.name == "django_pg_real_pool-lane-sweeper" for t in threading.enumerate())


def test_close_pool_closes_parked_connections(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    first, _ = tiny
    pid = pid_of(first)
    supply = supply_of(first)
    assert parked(first) == 1
    first.close_pool()
    assert supply.stats()["pool_parked"] == 0
    assert wait_until(lambda: backend_gone(admin, pid))
    # The closed supply parks nothing more; the wrapper finds the new pool.
    assert pid_of(first) != pid
    assert parked(first) == 1


def test_fork_child_never_touches_the_parents_parked_connection(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    first, _ = tiny
    pid = pid_of(first)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.write(write, str(pid_of(first)).encode())
            first.close()
            first.close_pool()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    child_pid = int(os.read(read, 64).decode())
    os.close(read)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid != pid
    # The parent's parked connection is intact and still serves the parent.
    assert pid_of(first) == pid


def test_threads_racing_for_the_supply_of_a_pool_share_one() -> None:
    # Two supplies on one pool would strand borrowers: one thread parks in its
    # supply while another waits in the pool, announced on the other supply.
    engine = "django_pg_real_pool"
    wrappers = [make_wrapper(engine, "supply-race", **POOLS[engine]) for _ in range(8)]
    start = threading.Barrier(len(wrappers))
    supplies: list[Supply] = []

    def find_supply(wrapper: Any) -> None:
        start.wait(10)
        supplies.append(wrapper._lease_make_supply())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside the lookup
    try:
        for _ in range(10):
            # As threads see it after close_pool(): the first borrows race to
            # make the new pool.
            wrappers[0].close_pool()
            supplies.clear()
            threads = [threading.Thread(target=find_supply, args=(w,)) for w in wrappers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(supplies) == len(wrappers)
            assert len({id(supply) for supply in supplies}) == 1
            assert wrappers[0].pool is supplies[0].adapter.pool
    finally:
        sys.setswitchinterval(interval)
        wrappers[0].close_pool()


def test_dj_test_database_teardown_gives_parked_connections_back_before_disposing() -> None:
    # django-db-connection-pool disposes its pools before dropping a test
    # database; disposing closes only connections resting in a pool.
    from django_pg_real_pool.dj_db_conn_pool._creation import _GiveBackParkedFirst

    engine = "django_pg_real_pool.dj_db_conn_pool"
    wrapper = make_wrapper(engine, "supply-teardown", **POOLS[engine])
    seen: dict[str, int] = {}

    class Disposing:
        def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
            seen.update(in_pool=in_pool(wrapper), parked=parked(wrapper))

    try:
        pid_of(wrapper)
        assert parked(wrapper) == 1
        creation = type("Creation", (_GiveBackParkedFirst, Disposing), {})()
        creation._destroy_test_db("unused", 0)
        assert seen == {"in_pool": 1, "parked": 0}
        # The engine's own creation class has it, outside django-db-connection-pool's.
        mro = type(wrapper.creation).__mro__
        assert mro[1] is _GiveBackParkedFirst
        assert mro.index(_GiveBackParkedFirst) < [c.__name__ for c in mro].index(
            "DatabaseCreationMixin"
        )
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_the_next_borrow_discards_a_hand_over_left_in_the_box(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    # Without a task bracket (a web thread), what an asynchronous exception
    # left in the box is found by the wrapper's next borrow, not overwritten.
    holder, waiter = tiny
    pid = pid_of(holder)
    # The state test_an_asynchronous_exception_in_a_queued_borrower_loses_nothing
    # reaches when the exception lands right after the wake-up: the box names
    # a connection the wrapper does not hold.
    box = waiter._lease_box
    supply_of(holder).get(box, _counters.new_counters(), None)
    assert box.conn is not None and waiter.connection is None
    assert waiter.lease_interrupted()
    discards = waiter._lease_counters.discards
    new_pid = pid_of(waiter)
    assert box.conn is None
    assert waiter._lease_counters.discards == discards + 1
    # Of unknown state, the stray was closed, and the pool replaced it.
    assert new_pid != pid
    assert wait_until(lambda: backend_gone(admin, pid))
