"""App configuration for deployguard: checks DEPLOYMENT_MODE, installs the guard, registers checks, rules."""

from __future__ import annotations

import logging
import os
import sys

from django.apps import AppConfig

logger = logging.getLogger("deployguard")


def running_command() -> str:
    """The management command this process runs (`manage.py NAME`, `django-admin NAME`), or ""."""
    argv = sys.argv or [""]
    program = os.path.basename(argv[0])
    if program in {"manage.py", "django-admin", "__main__.py"} and len(argv) > 1:
        return argv[1]
    return ""


class DeployguardConfig(AppConfig):
    name = "deployguard"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from deployguard import checks, guard, integrity, logs, monitoring, origin, roles, state
        from deployguard.deploy import child
        from deployguard.jobs import checks as job_checks
        from deployguard.jobs import runner as job_runner

        logs.install()
        state.check_environment()
        origin.connect_receivers()
        guard.connect_receivers()
        roles.prepare_process(running_command())
        child.prepare_process(running_command())
        checks.register()
        job_checks.register()
        job_runner.connect_receivers()
        integrity.autodiscover()
        monitoring.connect_receivers()
