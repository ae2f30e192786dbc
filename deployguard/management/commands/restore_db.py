"""manage.py restore_db: put the database back from a verified backup, and prove it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from deployguard.backup import (
    NotABackup,
    RestoreRefused,
    RestoreUnverified,
    check_backup,
    database_name,
    restore_database,
)


class Command(BaseCommand):
    help = (
        "Restore the database from a file made by backup_db. The file must match its manifest "
        "(SHA-256 and engine); after restoring, the protected tables' fingerprints must equal the "
        "manifest's. Asks for confirmation unless --yes. Exit status: 0 restored and verified; "
        "1 refused (damaged file, wrong engine, or not confirmed): nothing was touched; 2 misuse, "
        "including a PATH that is not a backup (missing, a FIFO or device, not the engine's format, a "
        "manifest that is not JSON or too large), refused before it is read; "
        "4 the restore ran but could not be verified: the database may differ, a person must act."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", type=Path, help="The backup file (its .manifest.json must sit beside it)."
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument(
            "--into-other-database",
            action="store_true",
            help="Restore a backup of another database into this one (refused otherwise).",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(
        self, *args: Any, path: Path, yes: bool, database: str, into_other_database: bool, **options: Any
    ) -> None:
        if database not in connections:
            raise CommandError(
                f"--database {database!r} is not in DATABASES ({', '.join(connections)}).", returncode=2
            )
        target = database_name(database)
        try:
            manifest = check_backup(path, using=database, other_database=into_other_database)
        except NotABackup as error:  # not a backup at all: checked before reading it
            raise CommandError(str(error), returncode=2) from None
        except RestoreRefused as error:
            raise CommandError(str(error), returncode=1) from None
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError(
                    "restore_db replaces every table's data; run it with --yes to confirm.", returncode=2
                )
            answer = input(
                f"Replace the data of {manifest.database} with {path} ({manifest.created_at})? [y/N] "
            )
            if answer.strip().lower() not in {"y", "yes"}:
                raise CommandError("Not confirmed: nothing was restored.", returncode=1)
        try:
            restore_database(path, using=database, other_database=into_other_database)
        except RestoreUnverified as error:
            raise CommandError(f"{error} The backup is still at {path}.", returncode=4) from None
        except RestoreRefused as error:
            raise CommandError(str(error), returncode=1) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {target} from {path}; fingerprints of {len(manifest.fingerprints)} "
                "protected tables match the manifest."
            )
        )
