"""Fixtures for the job tests: scratch databases (tests.deploy_apps.support) and real workers."""

from tests.deploy_apps.support import scratch, scratch_template  # noqa: F401
from tests.deployguard.jobs.workers import celery_broker, workers  # noqa: F401
