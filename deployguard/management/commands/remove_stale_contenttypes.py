"""Django's remove_stale_contenttypes, refused under DJANGO_ENV=production without an override.

Deleting a content type cascades to its permissions and to every admin log entry and generic
relation that points at it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.management.commands import remove_stale_contenttypes
from django.core.management.base import CommandParser

from deployguard.wholesale import add_override_argument, refuse_in_production


class Command(remove_stale_contenttypes.Command):
    help = (
        "Deletes stale content types (and, by cascade, their permissions and admin log entries). Under "
        'DJANGO_ENV=production it refuses (exit status 1) unless given --override-production-guard "REASON".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_override_argument(parser)

    def handle(self, **options: Any) -> None:
        refuse_in_production(
            self,
            "remove_stale_contenttypes",
            options,
            "deleting content types cascades to permissions, admin log entries and generic relations",
        )
        super().handle(**options)
