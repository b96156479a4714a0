"""Answer 503 when no pooled connection became free in time, so the load
generator can tell pool timeouts from other failures."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from psycopg_pool import PoolTimeout

from django_pg_real_pool.errors import PoolExhausted

POOL_TIMEOUT_HEADER = "X-Pool-Timeout"


def is_pool_timeout(exc: BaseException | None) -> bool:
    # Django wraps the pool's error in its own OperationalError: follow the chain.
    while exc is not None:
        if isinstance(exc, (PoolTimeout, PoolExhausted)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class PoolTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_pool_timeout(exception):
            return HttpResponse("pool timeout\n", status=503, headers={POOL_TIMEOUT_HEADER: "1"})
        return None
