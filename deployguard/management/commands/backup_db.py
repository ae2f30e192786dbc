"""manage.py backup_db: a verified backup of the database with its manifest; list and prune backups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections
from django.utils import timezone

from deployguard.backup import BackupError, backup_database, default_backup_dir
from deployguard.backup_files import BackupFile, list_backups, plan_prune, remove_backup
from deployguard.management.commands._integrity import EXIT_VIOLATIONS, IntegrityCommand, misuse
from deployguard.terminal import Progress, printable, table_progress

HELP = """Back up the whole database and prove the copy reads: SQLite through the online backup
API and PRAGMA integrity_check; PostgreSQL through pg_dump -Fc and pg_restore --list. Writes
PATH and PATH.manifest.json (engine, database, migrations, fingerprints of the protected
tables, size, SHA-256), both or neither; an existing PATH is refused without --overwrite.
--list shows every backup in the directory (time, engine, size, rows, whether the file
still matches its manifest's SHA-256). --prune --keep N removes the oldest verified backups
beyond the newest N, never one a deploy record names as its restore point: a dry run unless
--apply. Shows progress on a terminal (stderr); nothing when piped or with --verbosity 0.

Exit status: 0 backed up and verified (or listed, or pruned); 1 the backup failed and nothing
was left at PATH, or --list found a backup that does not match its manifest or is
incomplete; 2 misuse."""

DRY_RUN_DONE = "Dry run: nothing removed. Rerun with --apply to remove."
NOTHING_TO_PRUNE = "Nothing to prune: {count} verified, keeping the newest {keep}."


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover


def _backups(count: int) -> str:
    return f"{count} backup{'' if count == 1 else 's'}"


def _created(backup: BackupFile) -> str:
    created = backup.created_at
    return f"{timezone.localtime(created):%Y-%m-%d %H:%M:%S %Z}" if created else "-"


class Command(IntegrityCommand):
    help = HELP

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
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--list", action="store_true", help="List the backups in --dir and check each.")
        action.add_argument(
            "--prune", action="store_true", help="Remove old verified backups (needs --keep; dry run)."
        )
        parser.add_argument("--keep", type=int, metavar="N", help="With --prune: how many newest to keep.")
        parser.add_argument("--apply", action="store_true", help="With --prune: remove them.")
        parser.add_argument(
            "--dir",
            type=Path,
            help="With --list or --prune: the directory (default: DEPLOYGUARD_BACKUP_DIR).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._verbosity = options["verbosity"]
        database = options["database"]
        if database not in connections:
            raise misuse(f"--database {database!r} is not in DATABASES ({', '.join(connections)}).")
        managing = options["list"] or options["prune"]
        if managing and (options["output"] or options["overwrite"]):
            raise misuse("--output and --overwrite make a backup; they do not go with --list or --prune.")
        if not managing and (options["dir"] or options["apply"] or options["keep"] is not None):
            raise misuse("--dir, --keep and --apply go with --list or --prune.")
        if options["list"] and (options["apply"] or options["keep"] is not None):
            raise misuse("--keep and --apply go with --prune.")
        directory = options["dir"] or default_backup_dir()
        if options["list"]:
            self._list(directory, per_table=options["verbosity"] >= 2)
        elif options["prune"]:
            if options["keep"] is None or options["keep"] < 1:
                raise misuse("--prune needs --keep N, N 1 or more: the newest backup is never pruned.")
            self._prune(directory, keep=options["keep"], apply=options["apply"])
        else:
            self._backup(options["output"], database, overwrite=options["overwrite"])

    def _backup(self, output: Path | None, database: str, *, overwrite: bool) -> None:
        try:
            with Progress.for_command(self, self._verbosity, what="backup_db") as progress:
                progress.set_phase("copying and fingerprinting")
                path, manifest = backup_database(
                    output, using=database, overwrite=overwrite, on_table=table_progress(progress)
                )
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

    def _line(self, backup: BackupFile) -> str:
        engine = backup.manifest.engine if backup.manifest else "-"
        tables = len(backup.manifest.fingerprints) if backup.manifest else 0
        note = (
            f"  restore point of deploy {', '.join(backup.restore_point_of)}"
            if backup.restore_point_of
            else ""
        )
        return printable(
            f"{_created(backup):<23}  {engine:<10}  {_size(backup.size):>9}  {backup.rows:>9} rows "
            f"in {tables} tables  {backup.state:<26}  {backup.path.name}{note}"
        )

    def _list(self, directory: Path, *, per_table: bool) -> None:
        backups = self._checked(directory)
        if not backups:
            self.stdout.write(printable(f"No backups in {directory}."))
            return
        self.stdout.write(printable(f"Backups in {directory}, oldest first:"))
        for backup in backups:
            line = self._line(backup)
            self.stdout.write(line if backup.verified else self.style.ERROR(line))
            if per_table and backup.manifest:
                for table, fingerprint in sorted(backup.manifest.fingerprints.items()):
                    self.stdout.write(printable(f"    {table}: {fingerprint.get('count', 0)} rows"))
        bad = [b for b in backups if not b.verified]
        if bad:
            self.stdout.write(
                self.style.ERROR(
                    f"{len(bad)} of {_backups(len(backups))} cannot be restored as they are "
                    "(restore_db refuses them); the others verify."
                )
            )
            raise SystemExit(EXIT_VIOLATIONS)
        self.stdout.write(self.style.SUCCESS(f"{_backups(len(backups))}, every one verified."))

    def _checked(self, directory: Path) -> list[BackupFile]:
        with Progress.for_command(
            self, self._verbosity, what="backup_db", unit="backups checked"
        ) as progress:
            return list_backups(directory, progress=lambda done, total: progress.advance(done, total=total))

    def _prune(self, directory: Path, *, keep: int, apply: bool) -> None:
        backups = self._checked(directory)
        plan = plan_prune(backups, keep=keep)
        for backup in plan.protected:
            self.stdout.write(f"Keeping {self._line(backup)}")
        if not plan.remove:
            verified = len(plan.keep) + len(plan.protected)
            self.stdout.write(NOTHING_TO_PRUNE.format(count=_backups(verified), keep=keep))
            return
        verb = "Removing" if apply else "Would remove"
        for backup in plan.remove:
            self.stdout.write(f"{verb} {self._line(backup)}")
            if apply:
                remove_backup(backup)
        if not apply:
            self.stdout.write(DRY_RUN_DONE)
            return
        self.stdout.write(
            self.style.SUCCESS(f"Removed {_backups(len(plan.remove))}; kept the newest {len(plan.keep)}.")
        )
