"""One scratch database for the Django Tasks e2e tests (workers start per module)."""

from integrations.djtasks import harness
from tests.support.taskfixtures import project_fixtures

tk, admin = project_fixtures(harness.project, "tk", "pgrp_djtasks_e2e")
