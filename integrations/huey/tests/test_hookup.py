"""The hook-up: idempotent, reported by the system check when missing."""

from __future__ import annotations

import subprocess

import pytest
from huey import MemoryHuey

from django_pg_real_pool.huey import HOOK_NAME, install, is_installed
from integrations.huey import harness


def run_check(hq: harness.Project, **env: str) -> subprocess.CompletedProcess[str]:
    return hq.manage("check", "--deploy", "--fail-level", "ERROR", **env)


@pytest.mark.e2e
def test_check_warns_when_the_hookup_is_missing(hq: harness.Project) -> None:
    missing = run_check(hq, HQ_HOOKED="0")
    assert "django_pg_real_pool.W301" in missing.stderr, missing.stderr
    assert "django_pg_real_pool.huey.install(HUEY)" in missing.stderr
    hooked = run_check(hq)
    assert "W301" not in hooked.stderr, hooked.stderr


def test_install_twice_registers_each_hook_once() -> None:
    huey = MemoryHuey("hookup", immediate=False)
    install(huey)
    install(huey)
    assert is_installed(huey)
    for hooks in (huey._pre_execute, huey._post_execute, huey._startup, huey._shutdown):
        assert list(hooks) == [HOOK_NAME]
