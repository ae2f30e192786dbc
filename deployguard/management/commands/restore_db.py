"""manage.py restore_db: put the database back from a verified backup, and prove it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from deployguard.backup import (
    BackupError,
    NotABackup,
    RestoreRefused,
    RestoreUnverified,
    backup_database,
    check_backup,
    database_name,
    default_backup_path,
    restore_database,
)
from deployguard.management.commands._integrity import IntegrityCommand, misuse
from deployguard.terminal import Progress, printable, table_progress

HELP = """Restore the database from a file made by backup_db. The file must match its manifest
(SHA-256 and engine); after restoring, the protected tables' fingerprints must equal the
manifest's. Asks for confirmation unless --yes (without a terminal to ask on, --yes is
required). Before restoring, takes a verified safety backup of the current data into
DEPLOYGUARD_BACKUP_DIR and names it, so that a wrong restore can be undone
(--no-safety-backup skips it). Shows progress on a terminal (stderr).

Exit status: 0 restored and verified; 1 refused (damaged file, wrong engine, not confirmed,
or the safety backup failed): nothing was touched; 2 misuse, including a PATH that is not a
backup (missing, a FIFO or device, not the engine's format, a manifest that is not JSON or too
large), refused before it is read; 4 the restore ran but could not be verified: the database
may differ, a person must act. Deploy mode's state and deployguard's own records (deploys,
scrub runs, switches) are kept as they are, not taken from the backup."""

NOT_CONFIRMED_NO_TERMINAL = (
    "restore_db replaces every table's data and there is no terminal to confirm on: "
    "nothing was restored; rerun with --yes to confirm."
)
SAFETY_BACKUP_TAKEN = (
    "Safety backup of the current data: {path} (undo with: manage.py restore_db {path} --yes)."
)
SAFETY_BACKUP_FAILED = (
    "The safety backup of the current data failed ({error}): nothing was restored. "
    "Make room in DEPLOYGUARD_BACKUP_DIR, or rerun with --no-safety-backup to restore without one."
)


class Command(IntegrityCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", type=Path, help="The backup file (its .manifest.json must sit beside it)."
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument(
            "--no-safety-backup",
            action="store_true",
            help="Do not back up the current data first (the restore cannot then be undone).",
        )
        parser.add_argument(
            "--into-other-database",
            action="store_true",
            help="Restore a backup of another database into this one (refused otherwise).",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(
        self,
        *args: Any,
        path: Path,
        yes: bool,
        database: str,
        into_other_database: bool,
        no_safety_backup: bool,
        **options: Any,
    ) -> None:
        if database not in connections:
            raise misuse(f"--database {database!r} is not in DATABASES ({', '.join(connections)}).")
        target = database_name(database)
        verbosity = options["verbosity"]
        try:
            with Progress.for_command(self, verbosity, what="restore_db", unit="") as progress:
                progress.set_phase("checking the backup against its manifest")
                manifest = check_backup(path, using=database, other_database=into_other_database)
        except NotABackup as error:  # not a backup at all: checked before reading it
            raise CommandError(printable(error), returncode=2) from None
        except RestoreRefused as error:
            raise CommandError(printable(error), returncode=1) from None
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError(NOT_CONFIRMED_NO_TERMINAL, returncode=1)
            answer = input(
                f"Replace the data of {printable(manifest.database)} with {printable(path)} "
                f"({printable(manifest.created_at)})? [y/N] "
            )
            if answer.strip().lower() not in {"y", "yes"}:
                raise CommandError("Not confirmed: nothing was restored.", returncode=1)
        safety = None if no_safety_backup else self._safety_backup(database, verbosity)
        try:
            with Progress.for_command(self, verbosity, what="restore_db") as progress:
                progress.set_phase("restoring")
                restore_database(
                    path,
                    using=database,
                    other_database=into_other_database,
                    on_table=table_progress(progress),
                )
        except RestoreUnverified as error:
            before = f" The data from before the restore is in {safety}." if safety else ""
            raise CommandError(
                printable(f"{error} The backup is still at {path}.{before}"), returncode=4
            ) from None
        except RestoreRefused as error:
            raise CommandError(printable(error), returncode=1) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {printable(target)} from {printable(path)}; fingerprints of "
                f"{len(manifest.fingerprints)} protected tables match the manifest."
            )
        )

    def _safety_backup(self, database: str, verbosity: int) -> Path:
        """A verified backup of the data about to be replaced; CommandError (1) when it fails."""
        try:
            with Progress.for_command(self, verbosity, what="restore_db") as progress:
                progress.set_phase("safety backup of the current data")
                path, _manifest = backup_database(
                    default_backup_path(database, label="before-restore"),
                    using=database,
                    on_table=table_progress(progress),
                )
        except BackupError as error:
            raise CommandError(printable(SAFETY_BACKUP_FAILED.format(error=error)), returncode=1) from None
        self.stdout.write(printable(SAFETY_BACKUP_TAKEN.format(path=path)))
        return path
