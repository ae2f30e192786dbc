"""manage.py backup_db: a verified backup of the database with its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from deployguard.backup import BackupError, backup_database
from deployguard.terminal import printable


class Command(BaseCommand):
    help = (
        "Back up the whole database and prove the copy reads: SQLite through the online backup API "
        "and PRAGMA integrity_check; PostgreSQL through pg_dump -Fc and pg_restore --list. Writes "
        "PATH and PATH.manifest.json (engine, database, migrations, fingerprints of the protected "
        "tables, size, SHA-256). Exit status: 0 backed up and verified; 1 the backup failed and "
        "nothing was left at PATH; 2 misuse."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", type=Path, help="Where to write the backup (default: var/backups/<db>-<time>.<ext>)."
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="Replace a backup already at --output (refused otherwise).",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(self, *args: Any, output: Path | None, database: str, overwrite: bool, **options: Any) -> None:
        if database not in connections:
            raise CommandError(
                f"--database {database!r} is not in DATABASES ({', '.join(connections)}).", returncode=2
            )
        try:
            path, manifest = backup_database(output, using=database, overwrite=overwrite)
        except BackupError as error:
            raise CommandError(printable(error), returncode=1) from None
        rows = sum(fp["count"] for fp in manifest.fingerprints.values())
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up {manifest.engine} database {printable(manifest.database)} to {printable(path)} "
                f"({manifest.size} bytes, {len(manifest.fingerprints)} protected tables, {rows} rows, "
                f"sha256 {manifest.sha256[:12]}…)."
            )
        )
