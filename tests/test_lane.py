"""Released connections parked in front of the pool (``_lane.py``).

Each test uses its own one-connection pool, so that "parked", "in the pool"
and "lent" are unambiguous, and asks the server which backend served what.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from django_pg_real_pool import _lane
from tests.support.pgstat import wait_until
from tests.support.pgstat import wrapper_backend_pid as pid_of
from tests.test_pool_limits import HoldConnection, make_wrapper

POOLS = {
    "django_pg_real_pool": {"OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 5}}},
    "django_pg_real_pool.dj_db_conn_pool": {
        "POOL_OPTIONS": {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 5}
    },
}


@pytest.fixture(params=list(POOLS), ids=["native", "dj_db_conn_pool"])
def tiny(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """Two wrappers (think: two threads' connections) on one one-connection pool."""
    engine: str = request.param
    alias = f"lane-{engine.rsplit('.', 1)[-1]}"
    first = make_wrapper(engine, alias, **POOLS[engine])
    second = make_wrapper(engine, alias, **POOLS[engine])
    try:
        yield first, second
    finally:
        second.close()
        first.close()
        first.close_pool()


def parked(wrapper: Any) -> int:
    return int(wrapper._lease_adapter.stats()["pool_parked"])


def in_pool(wrapper: Any) -> int:
    """Connections resting in the pool itself (not parked, not lent)."""
    stats = wrapper._lease_adapter.stats()
    return int(stats["pool_available"] - stats["pool_parked"])


def test_a_release_parks_and_the_next_borrow_takes_it(tiny: tuple[Any, Any]) -> None:
    first, second = tiny
    pid = pid_of(first)
    assert first.connection is None
    assert (parked(first), in_pool(first)) == (1, 0)
    # Another wrapper (another thread) gets the same backend from the lane.
    assert pid_of(second) == pid
    assert (parked(first), in_pool(first)) == (1, 0)
    # Statistics count it available.
    stats = first._lease_adapter.stats()
    assert stats["pool_available"] == 1


def test_native_pool_is_not_asked_again_while_connections_park() -> None:
    wrapper = make_wrapper("django_pg_real_pool", "lane-requests", **POOLS["django_pg_real_pool"])
    try:
        pid = pid_of(wrapper)
        before = wrapper._lease_adapter.pool.get_stats().get("requests_num", 0)
        assert {pid_of(wrapper) for _ in range(20)} == {pid}
        assert wrapper._lease_adapter.pool.get_stats().get("requests_num", 0) == before
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_a_waiting_borrower_gets_the_release_not_the_lane(tiny: tuple[Any, Any]) -> None:
    holder, waiter = tiny
    pid = pid_of(holder)
    lane = holder._lease_adapter.lane
    got: list[Any] = []

    def borrow() -> None:
        try:
            got.append(pid_of(waiter))
        except BaseException as exc:  # reported below, not lost in the thread
            got.append(exc)

    waiter.inc_thread_sharing()  # made here, used by the thread below

    with HoldConnection(holder):
        assert holder.connection is not None
        thread = threading.Thread(target=borrow)
        thread.start()
        # The waiter announces itself before it queues in the pool.
        assert wait_until(lambda: len(lane.waiting) == 1)
    # The release went to the pool's queue, straight to the waiter.
    thread.join(10)
    waiter.dec_thread_sharing()
    assert got == [pid]
    assert lane.waiting == set()


def test_a_release_with_an_announced_borrower_goes_to_the_pool(tiny: tuple[Any, Any]) -> None:
    first, _ = tiny
    pid_of(first)
    lane = first._lease_adapter.lane
    token = object()
    lane.waiting.add(token)  # a borrower between its last look and the pool's queue
    try:
        pid_of(first)
        assert (parked(first), in_pool(first)) == (0, 1)
    finally:
        lane.waiting.discard(token)


def test_a_park_that_raced_an_announcement_hands_over(tiny: tuple[Any, Any]) -> None:
    first, _ = tiny
    pid_of(first)  # parked
    lane = first._lease_adapter.lane
    token = object()
    lane.waiting.add(token)  # announced just after the release looked
    try:
        lane.after_park()
        assert (parked(first), in_pool(first)) == (0, 1)
    finally:
        lane.waiting.discard(token)


def test_a_connection_lent_longer_than_park_max_goes_back_through_the_pool(
    tiny: tuple[Any, Any],
) -> None:
    first, _ = tiny
    with first.cursor() as cursor:
        cursor.execute("SELECT 1")
        # Lent by the pool PARK_MAX ago: its release visits the pool
        # (max_lifetime, drain() and recycle are enforced there).
        first._lease_state.lent_at -= _lane.PARK_MAX
    assert (parked(first), in_pool(first)) == (0, 1)
    # The next borrow comes from the pool, restarting the clock.
    pid_of(first)
    assert (parked(first), in_pool(first)) == (1, 0)


def test_the_sweeper_sends_back_connections_parked_too_long(tiny: tuple[Any, Any]) -> None:
    first, _ = tiny
    pid_of(first)
    assert parked(first) == 1
    lane = first._lease_adapter.lane
    raw = first._lease_adapter.raw(lane.parked[0])
    raw.pgrp_state.returned_at -= _lane.PARK_MAX
    # Nothing else runs: the sweeper thread notices within half PARK_MAX.
    assert wait_until(lambda: in_pool(first) == 1, timeout=5)
    assert parked(first) == 0
    assert any(t.name == "django_pg_real_pool-lane-sweeper" for t in threading.enumerate())


def test_close_pool_closes_parked_connections(
    tiny: tuple[Any, Any], admin: psycopg.Connection[Any]
) -> None:
    first, _ = tiny
    pid = pid_of(first)
    lane = first._lease_adapter.lane
    assert parked(first) == 1
    first.close_pool()
    assert len(lane) == 0
    assert wait_until(
        lambda: (
            admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is None
        )
    )
    # The closed lane parks nothing more; the wrapper finds the new pool.
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


def test_threads_racing_for_the_adapter_of_a_pool_share_one_lane() -> None:
    # Two lanes on one pool would strand borrowers: one thread parks in its
    # lane while another waits in the pool, announced on the other lane.
    engine = "django_pg_real_pool"
    wrappers = [make_wrapper(engine, "lane-race", **POOLS[engine]) for _ in range(8)]
    pool = wrappers[0].pool  # created, with its adapter
    start = threading.Barrier(len(wrappers))
    lanes: list[Any] = []

    def find_adapter(wrapper: Any) -> None:
        start.wait(10)
        lanes.append(wrapper._lease_make_adapter().lane)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside the lookup
    try:
        for _ in range(20):
            # As a thread sees it between close_pool() and the next borrow.
            type(wrappers[0])._adapters.pop("lane-race")
            lanes.clear()
            threads = [threading.Thread(target=find_adapter, args=(w,)) for w in wrappers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(lanes) == len(wrappers)
            assert len({id(lane) for lane in lanes}) == 1
            assert type(wrappers[0])._adapters["lane-race"].pool is pool
    finally:
        sys.setswitchinterval(interval)
        wrappers[0].close_pool()


def test_dj_test_database_teardown_gives_parked_connections_back_before_disposing() -> None:
    # django-db-connection-pool disposes its pools before dropping a test
    # database; disposing closes only connections resting in a pool.
    from django_pg_real_pool.dj_db_conn_pool.base import _GiveBackParkedFirst

    engine = "django_pg_real_pool.dj_db_conn_pool"
    wrapper = make_wrapper(engine, "lane-teardown", **POOLS[engine])
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
