"""App configuration for documents: seals its tables and installs the direct-write guard."""

from __future__ import annotations

from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    verbose_name = "Documents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from documents import models, signals

        models.seal_tables()
        signals.connect_receivers()
