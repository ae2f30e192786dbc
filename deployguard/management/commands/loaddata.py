"""Django's loaddata, refused under DJANGO_ENV=production for rows of protected tables.

A fixture's rows overwrite the rows with the same primary keys and bypass every service;
loading them into a protected table (every table but deployguard's own and the allowlist)
is refused before the first one is saved: the whole load rolls back.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.core.management.commands import loaddata

from deployguard.tables import is_protected
from deployguard.wholesale import (
    EXIT_REFUSED,
    OVERRIDE_FLAG,
    REFUSED,
    SAFE_ALTERNATIVES,
    add_override_argument,
    guards_production,
    refuse_in_production,
)


class Command(loaddata.Command):
    help = (
        loaddata.Command.help + " Under DJANGO_ENV=production, rows of protected tables are refused "
        '(exit status 1) unless given --override-production-guard "REASON", which is logged.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_override_argument(parser)

    def handle(self, *fixture_labels: str, **options: Any) -> None:
        self.override_reason = (options.get("override_production_guard") or "").strip()
        if self.override_reason:
            refuse_in_production(self, "loaddata", options, "")
        super().handle(*fixture_labels, **options)

    def save_obj(self, obj: Any) -> bool:
        table = obj.object._meta.db_table
        if guards_production() and not self.override_reason and is_protected(table.lower()):
            what = f"the fixture writes rows of the protected table {table}, around every service"
            raise CommandError(
                REFUSED.format(command="loaddata", what=what, instead=SAFE_ALTERNATIVES, flag=OVERRIDE_FLAG),
                returncode=EXIT_REFUSED,
            )
        return super().save_obj(obj)
