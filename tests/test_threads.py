"""Many threads, few connections: no backend is ever used by two threads at once."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import psycopg
from django.db import connections, transaction

from tests.support.pgstat import idle_in_transaction, pool_counts, sessions
from tests.testapp.models import Item

THREADS = 32
ROUNDS = 15


def test_no_backend_shared_by_two_threads(engine: str, admin: psycopg.Connection[Any]) -> None:
    intervals: list[tuple[int, int, float, float]] = []
    errors: list[BaseException] = []
    record = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                if i % 3 == 0:
                    with transaction.atomic(using=engine):
                        t0 = time.monotonic()
                        with connections[engine].cursor() as cursor:
                            cursor.execute("SELECT pg_backend_pid()")
                            pid = cursor.fetchone()[0]
                        Item.objects.using(engine).create(name=f"t{n}-{i}", value=pid)
                        with connections[engine].cursor() as cursor:
                            cursor.execute("SELECT pg_backend_pid()")
                            assert cursor.fetchone()[0] == pid
                        t1 = time.monotonic()
                    with record:
                        intervals.append((n, pid, t0, t1))
                else:
                    Item.objects.using(engine).filter(value=-1).exists()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections[engine].close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(intervals) == THREADS * 5
    by_pid: dict[int, list[tuple[int, float, float]]] = {}
    for n, pid, t0, t1 in intervals:
        by_pid.setdefault(pid, []).append((n, t0, t1))
    assert len(by_pid) <= 4
    for pid, uses in by_pid.items():
        uses.sort(key=lambda u: u[1])
        for (n1, _, end1), (n2, start2, _) in itertools.pairwise(uses):
            assert start2 >= end1, f"backend {pid} used by threads {n1} and {n2} at once"
    assert Item.objects.using(engine).count() == THREADS * 5
    size, idle = pool_counts(engine)
    assert idle == size
    assert not idle_in_transaction(admin)
    assert len(sessions(admin, engine)) <= 4
