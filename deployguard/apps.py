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
    verbose_name = "Deploy guard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from deployguard import checks, guard, integrity, monitoring, origin, state
        from deployguard.jobs import checks as job_checks
        from deployguard.jobs import runner as job_runner

        state.check_environment()
        origin.connect_receivers()
        guard.connect_receivers()
        if running_command() == "deploy_safe":
            # deployguard is first in INSTALLED_APPS, so every later app's ready() runs frozen.
            from deployguard import pipeline

            state.force_for_process(pipeline.FROZEN_REASON)
            pipeline.install_start_up_excepthook()
        schema_reason = os.environ.get(guard.SCHEMA_CHANGES_VARIABLE, "")
        if schema_reason:
            guard.allow_schema_changes_for_process(schema_reason)
            from deployguard import pipeline

            pipeline.install_data_migration_allowance()
        if os.environ.get(guard.REFUSALS_REPORT_VARIABLE):
            # deploy_safe's migrate subprocess: from here on (later apps' ready() included), every
            # write the guard refuses is reported to deploy_safe, even one the code catches.
            from deployguard import pipeline

            pipeline.install_refusal_report()
        checks.register()
        job_checks.register()
        job_runner.connect_receivers()
        integrity.autodiscover()
        monitoring.connect_receivers()
