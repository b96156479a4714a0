"""One scratch database and one Redis server for the dramatiq e2e tests (workers start per test)."""

from integrations.dramatiq import harness
from tests.support.taskfixtures import project_fixtures

dq, admin = project_fixtures(harness.project, "dq", "pgrp_dramatiq_e2e")
