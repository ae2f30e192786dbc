"""App configuration for deployguard: checks DEPLOYMENT_MODE, installs the guard, registers checks, rules."""

from __future__ import annotations

from django.apps import AppConfig


class DeployguardConfig(AppConfig):
    name = "deployguard"
    verbose_name = "Deploy guard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from deployguard import checks, guard, integrity, monitoring, origin, state

        state.check_environment()
        origin.connect_receivers()
        guard.connect_receivers()
        checks.register()
        integrity.autodiscover()
        monitoring.connect_receivers()
