"""One scratch database and one Redis server for the huey e2e tests (consumers start per module)."""

from integrations.huey import harness
from tests.support.taskfixtures import project_fixtures

hq, admin = project_fixtures(harness.project, "hq", "pgrp_huey_e2e")
