"""The project's settings plus the deploy test apps named in DEPLOY_TEST_APPS (comma-separated)."""

import os

from project.settings import *  # noqa: F403

DEPLOY_TEST_APPS = [name for name in os.environ.get("DEPLOY_TEST_APPS", "").split(",") if name]
INSTALLED_APPS = [*INSTALLED_APPS, *(f"tests.deploy_apps.{name}" for name in DEPLOY_TEST_APPS)]  # noqa: F405
DEPLOYGUARD_DEPLOY_LOG = os.environ.get("DEPLOYGUARD_DEPLOY_LOG", str(VAR_DIR / "deploys.log"))  # noqa: F405
