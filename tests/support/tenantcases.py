"""What the tenant-per-message cases of the task-queue projects must show (#18).

The tasks are ``integrations/_common/tenancy.py``'s; each project's test
module adds only how its queue starts a worker, sends a task and reads its
outcome.
"""

from __future__ import annotations

import random
from typing import Any

from integrations._common.tenancy import READER_ROLE, ROWS_PER_TENANT, TENANTS
from tests.support.leakcases import DEFAULT_SEARCH_PATH

#: How the tasks set their tenant: session_context(), or plain SETs the
#: replay option records.
MODES = ["context", "set"]
MESSAGES = 40


def plan(seed: int) -> list[str]:
    """The tenant of each of :data:`MESSAGES` messages, in sending order."""
    rnd = random.Random(seed)
    return [rnd.choice(TENANTS) for _ in range(MESSAGES)]


def wrong_reads(tenant: str, seen: dict[str, Any]) -> list[Any]:
    """What a ``tenant_rows`` task saw that was not its tenant's (empty: all right)."""
    wrong: list[Any] = [row for row in seen["rows"] if row[0] != tenant]
    if len(seen["rows"]) != ROWS_PER_TENANT:
        wrong.append(("row count", len(seen["rows"])))
    if seen["user"] != READER_ROLE or seen["tenant_id"] != tenant:
        wrong.append(("context", seen["user"], seen["tenant_id"]))
    if not all(seen["released"]):
        wrong.append(("held after a query", seen["released"]))
    return wrong


def is_default(probe: dict[str, Any]) -> bool:
    """Whether a ``tenant_probe`` ran with the server's defaults: its login
    role, no tenant setting, the default path, its connection returned."""
    return (
        probe["login_role"] is True
        and probe["tenant_id"] in (None, "")
        and probe["search_path"] == DEFAULT_SEARCH_PATH
        and probe["released"] is True
    )


def assert_context_leak_reported(record: dict[str, Any], task: str) -> None:
    """``record`` (a bracket's leak report) names ``task`` and the
    ``session_context`` that ``leak_tenant_context`` left entered."""
    assert record["task"] == task
    assert record["alias"] == "default"
    assert any(
        problem.startswith("session_context() left entered") and "app.tenant_id='2'" in problem
        for problem in record["problems"]
    ), record
