"""The system check reports django-rq's worker class when it lacks the bracket."""

from __future__ import annotations

import subprocess

import pytest

from integrations.rq import harness

pytestmark = pytest.mark.e2e


def run_check(rqp: harness.Project, **env: str) -> subprocess.CompletedProcess[str]:
    return rqp.manage("check", "--fail-level", "ERROR", **env)


def test_check_warns_about_a_worker_class_without_the_bracket(rqp: harness.Project) -> None:
    stock = run_check(rqp, RQP_WORKER_CLASS="rq.worker.Worker")
    assert "django_pg_real_pool.W401" in stock.stderr, stock.stderr
    assert '"WORKER_CLASS": "django_pg_real_pool.rq.RealPoolWorker"' in stock.stderr
    for ours in (harness.FORKING, harness.SIMPLE, "rq_app.workers.ParentProbingWorker"):
        hooked = run_check(rqp, RQP_WORKER_CLASS=ours)
        assert "W401" not in hooked.stderr, hooked.stderr
