"""Django's flush, refused under DJANGO_ENV=production without --override-production-guard."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.core.management.commands import flush

from deployguard.wholesale import add_override_argument, refuse_in_production


class Command(flush.Command):
    help = (
        flush.Command.help + " Under DJANGO_ENV=production it refuses (exit status 1) unless given "
        '--override-production-guard "REASON", which is logged.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_override_argument(parser)

    def handle(self, **options: Any) -> None:
        refuse_in_production(self, "flush", options, "it deletes every row of every table")
        super().handle(**options)
