"""Async views: the async ORM (``aget``, ``acount``, ``async for``,
``aiterator``), ``sync_to_async`` code, a gate that holds requests between
two queries, and a status view that reads the pool without borrowing.

The gate and the counters live in the server's event loop (one process, one
loop): the e2e test parks requests, looks at the pool, then releases them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse

from .models import Row

# Event-loop state (only touched from the loop, no lock needed).
_parked = 0
_gate: asyncio.Event | None = None
# Touched from sync_to_async threads: guarded by _lock.
_lock = threading.Lock()
_sleeping = 0
_slept = 0


def _gate_event() -> asyncio.Event:
    # Created lazily, inside the running loop (nothing runs at import).
    global _gate
    if _gate is None:
        _gate = asyncio.Event()
    return _gate


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


async def count(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"count": await Row.objects.acount()})


async def get_row(request: HttpRequest, name: str) -> JsonResponse:
    row = await Row.objects.aget(name=name)
    return JsonResponse({"name": row.name, "value": row.value})


async def listing(request: HttpRequest) -> JsonResponse:
    names = [row.name async for row in Row.objects.order_by("name")]
    return JsonResponse({"names": names})


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    """Rows streamed from a server-side cursor, paced like a slow producer."""

    async def rows() -> AsyncIterator[str]:
        async for row in Row.objects.order_by("id").aiterator(chunk_size=10):
            yield f"{row.name}\n"
            await asyncio.sleep(0.002)

    return StreamingHttpResponse(rows(), content_type="text/plain")


def _write(name: str) -> int:
    with transaction.atomic():
        Row.objects.create(name=name)
        return _backend_pid()


async def write(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse({"pid": await sync_to_async(_write)(name)})


async def parked(request: HttpRequest) -> JsonResponse:
    """Query, wait at the gate (no query), query again."""
    global _parked
    before = await sync_to_async(_backend_pid)()
    _parked += 1
    try:
        await _gate_event().wait()
    finally:
        _parked -= 1
    rows = await Row.objects.acount()
    after = await sync_to_async(_backend_pid)()
    return JsonResponse({"before": before, "after": after, "count": rows})


async def release(request: HttpRequest) -> JsonResponse:
    """Open the gate for every parked request; the next ones wait again."""
    global _gate
    gate, _gate = _gate_event(), None
    gate.set()
    return JsonResponse({"released": True})


def _sleep(seconds: float) -> None:
    global _sleeping, _slept
    try:
        with connection.cursor() as cursor:
            # Counted once it holds a connection (after waiting for the pool).
            with _lock:
                _sleeping += 1
            try:
                cursor.execute("SELECT pg_sleep(%s)", [seconds])
            finally:
                with _lock:
                    _sleeping -= 1
    finally:
        with _lock:
            _slept += 1


async def db_sleep(request: HttpRequest) -> JsonResponse:
    """A query still running on the server when the client goes away."""
    seconds = float(request.GET.get("s", "1"))
    await sync_to_async(_sleep)(seconds)
    return JsonResponse({"slept": seconds})


def _pool_state() -> dict[str, Any]:
    from django_pg_real_pool import _bracket, _registry

    supplies = [w._lease_supply for w in _registry.wrappers() if w._lease_supply is not None]
    stats = supplies[0].stats() if supplies else {}
    return {
        "pool_size": stats.get("pool_size", 0),
        "pool_available": stats.get("pool_available", 0),
        "requests_waiting": stats.get("requests_waiting", 0),
        # Every live wrapper (one per request context) that holds a connection.
        "holders": {k: v for k, v in _bracket.wrappers_snapshot().items() if v},
    }


async def status(request: HttpRequest) -> JsonResponse:
    """The pool and the wrappers, read from the loop: this view never borrows."""
    with _lock:
        sleeping, slept = _sleeping, _slept
    return JsonResponse({"parked": _parked, "sleeping": sleeping, "slept": slept, **_pool_state()})
