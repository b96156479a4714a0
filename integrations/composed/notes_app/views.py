"""The tenant web project's one view (``tests/test_tenants_web.py``).

django-tenants' middleware has already picked the tenant from the Host
header and set the connection's schema. The view queries twice with
non-database work between, as a real view does, and reports what each
query saw and whether the connection went back to the pool after each one.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse

from .models import Note

#: Non-database work between the two queries (an upstream call, a template):
#: other requests borrow the connection meanwhile.
WORK_SECONDS = 0.005


def _between_queries() -> dict[str, Any]:
    """Whether this thread still holds a connection, and why."""
    return {"released": connection.connection is None, "holders": connection.lease_holders()}


def notes(request: HttpRequest) -> JsonResponse:
    """GET: the tenant's notes; POST ``text=...``: add one, then read them all.

    ``?setting=1``: first a plain ``set_config('app.tenant_id', <tenant>, false)``
    (as apps with row-level security do), which the replay option records for
    the rest of this request only; the last query reports the setting.
    """
    tenant = request.tenant.schema_name  # type: ignore[attr-defined]
    after: list[dict[str, Any]] = []
    setting = request.GET.get("setting") == "1"
    if setting:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.tenant_id', %s, false)", [tenant])
        after.append(_between_queries())
    if request.method == "POST":
        Note.objects.create(text=request.POST["text"])
        after.append(_between_queries())
    texts = list(Note.objects.order_by("id").values_list("text", flat=True))
    after.append(_between_queries())
    time.sleep(WORK_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('search_path'), current_setting('app.tenant_id', true), "
            "pg_backend_pid()"
        )
        search_path, tenant_setting, pid = cursor.fetchone()
    after.append(_between_queries())
    return JsonResponse(
        {
            "tenant": tenant,
            "texts": texts,
            "search_path": search_path,
            "set_setting": setting,
            "tenant_setting": tenant_setting,
            "pid": pid,
            "after_each_query": after,
        }
    )
