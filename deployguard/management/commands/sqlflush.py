"""Django's sqlflush, refused under DJANGO_ENV=production: piped into dbshell it empties every table."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.core.management.commands import sqlflush

from deployguard.wholesale import add_override_argument, refuse_in_production


class Command(sqlflush.Command):
    help = (
        sqlflush.Command.help + " Under DJANGO_ENV=production it refuses (exit status 1) unless given "
        '--override-production-guard "REASON", which is logged.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_override_argument(parser)

    def handle(self, **options: Any) -> str:
        refuse_in_production(
            self,
            "sqlflush",
            options,
            "its SQL, piped into `manage.py dbshell`, deletes every row of every table",
        )
        return super().handle(**options)
