"""One scratch database and one Redis server for the RQ e2e tests (workers start per module)."""

from integrations.rq import harness
from tests.support.taskfixtures import project_fixtures

rqp, admin = project_fixtures(harness.project, "rqp", "pgrp_rq_e2e")
