"""App configuration for deployguard: connects its signal receivers, finds apps' integrity rules."""

from __future__ import annotations

from django.apps import AppConfig


class DeployguardConfig(AppConfig):
    name = "deployguard"
    verbose_name = "Deploy guard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from deployguard import integrity, monitoring, origin

        origin.connect_receivers()
        integrity.autodiscover()
        monitoring.connect_receivers()
