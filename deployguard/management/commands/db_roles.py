"""Print, or apply, the grants that make a role the site's least-privileged application role."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from deployguard import roles

EXIT_FAILED = 1
EXIT_USAGE = 2


class Command(BaseCommand):
    help = (
        "PostgreSQL: print the SQL that makes ROLE a least-privileged application role (read and write "
        "rows; no DDL, no trigger control, no ownership, no sequence privileges where identity columns "
        "make them unnecessary, no access to the freeze's key), or with --apply run it. Connects as the "
        "tables' owner (DEPLOYGUARD_OWNER_DATABASE_URL, default DATABASE_URL). Run it again after a "
        "migration that adds tables if the owner's default privileges were changed since. "
        "Exit status: 0 printed or applied; 1 applying failed (nothing changed); 2 usage error "
        "(not PostgreSQL, no such role, the role is a superuser, the owner or owns tables)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--app-role", required=True, help="The role the site and workers connect as.")
        parser.add_argument("--apply", action="store_true", help="Run the SQL (in one transaction).")
        parser.add_argument("--database", default="default", help="The database alias (default: default).")

    def handle(self, *args: Any, app_role: str, apply: bool, database: str, **options: Any) -> None:
        if database not in connections:
            raise CommandError(f"--database {database!r} is not in DATABASES.", returncode=EXIT_USAGE)
        connection = connections[database]
        if connection.vendor != "postgresql":
            raise CommandError(
                f"db_roles needs PostgreSQL ({connection.vendor} has no roles): nothing to do.",
                returncode=EXIT_USAGE,
            )
        try:
            statements = roles.app_role_sql(connection, app_role)
        except roles.RoleProblem as error:
            raise CommandError(str(error), returncode=EXIT_USAGE) from None
        if not apply:
            for statement in statements:
                self.stdout.write(statement + ";")
            return
        try:
            roles.apply(connection, statements)
        except DatabaseError as error:
            raise CommandError(
                f"Applying the grants failed, nothing changed: {str(error).strip()}. Run db_roles connected "
                "as the tables' owner (DEPLOYGUARD_OWNER_DATABASE_URL).",
                returncode=EXIT_FAILED,
            ) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Applied {len(statements)} statements: {app_role} may read and write rows only."
            )
        )
