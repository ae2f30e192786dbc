"""Django's migrate, refused under DJANGO_ENV=production when it would unapply migrations.

Unapplying (`migrate APP zero`, or back to an earlier migration) runs the reverse operations:
dropping a model's table deletes every row in it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.exceptions import AmbiguityError
from django.db.migrations.executor import MigrationExecutor

from deployguard.wholesale import add_override_argument, guards_production, refuse_in_production


def unapplies(options: dict[str, Any]) -> bool:
    """Whether migrating to the target `options` name runs any migration backwards."""
    app_label, name = options.get("app_label"), options.get("migration_name")
    if not app_label or not name:
        return False
    executor = MigrationExecutor(connections[options.get("database") or DEFAULT_DB_ALIAS])
    try:
        if name == "zero":
            target = (app_label, None)
        else:
            migration = executor.loader.get_migration_by_prefix(app_label, name)
            target = (migration.app_label, migration.name)
    except (AmbiguityError, KeyError):
        return False  # Django's own command says what is wrong with the name
    return any(backwards for _, backwards in executor.migration_plan([target]))


class Command(migrate.Command):
    help = (
        migrate.Command.help + " Under DJANGO_ENV=production, unapplying migrations (APP zero, or an "
        'earlier migration) is refused (exit status 1) unless given --override-production-guard "REASON".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_override_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        if guards_production() and unapplies(options):
            refuse_in_production(
                self,
                f"migrate {options['app_label']} {options['migration_name']}",
                options,
                "unapplying migrations drops tables and columns, with every row in them",
            )
        super().handle(*args, **options)
