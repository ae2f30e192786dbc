"""manage.py deploy_safe: the verified, reversible deploy that CI runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from deployguard import baseline, files, state
from deployguard.deploy import run
from deployguard.deploy.steps import EXIT_MISUSE
from deployguard.management.commands._integrity import OperatorCommand
from deployguard.terminal import printable

HELP = """Deploy safely: run the pre-checks, back the data up, freeze it, migrate, and prove the data
after the deploy equals the data at the freeze; put it back when it does not.

Steps, each timed: pre-checks (one deploy at a time, writes tracked from here to the end, no
incomplete earlier deploy, deploy mode off, backup directory writable, clean git tree, check
--deploy, makemigrations --check, integrity rules or --baseline, the write-path audit) -> the
verified backup and the fingerprints of the protected tables, taken while the site still writes
-> deploy mode on -> the backup proved at the freeze: tables written since the copy are copied
and hashed again (PostgreSQL: into a delta beside the dump), the others proved unwritten ->
migrate (in a subprocess started when deploy mode goes on, which migrates only when told to:
schema changes and bookkeeping rows only; data
migrations only with --allow-data-migration) -> post-checks (tables migrate did not write proved
unwritten, the others' fingerprints equal over the columns each had before, new tables empty,
integrity no worse, no unapplied migration) -> deploy mode off -> DeployRecord and one JSON line
in the deploy log, with the freeze window (seconds writes were refused). Writes are tracked by
triggers (PostgreSQL: a log only the tables' owner reads; SQLite: write counts), removed at the
end whatever the end. This process itself starts frozen: an app whose
ready() hook writes stops it at start-up (exit 1), before anything is touched. A write the guard
refuses during migrate fails the deploy (exit 1, the writer named by file and line) even when
the code that tried it caught the refusal: that release writes during deploys.

Deploy mode belongs to the run while it runs: `deploy_mode off` (command, endpoint, admin, code
in migrate) is refused; checked at each step, deploy mode found off stops the run (exit 4) with
nothing restored over writes made meanwhile. Tables whose columns a migration drops or retypes
are compared by value (as text, rows matched by primary key) against the backup; migrate's
bookkeeping tables keep every existing row and gain only the rows migrate adds.

Exit status: 0 deployed and verified; 1 verification failed, and the data was restored (or
proved unchanged) and verified; 2 misuse (bad options; --report or --baseline not a regular
file, refused before anything is touched); 3 a pre-check failed, nothing was touched (another
deploy holds the lock of this database, by any path to it, for one; or a transaction writing
when the tracking starts outlasts DEPLOYGUARD_DRAIN_TIMEOUT); 4 the restore failed or could not be
verified, or deploy mode was switched off mid-deploy, or the run stopped on an unexpected error:
the database may differ, deploy mode stays on, a person must act (the message names the backup
and the command to run). --recover finishes a deploy whose process was killed: 0 recovered
(restored, proved unchanged, or killed before its backup was proved), 4 refused or could not: the backup
is not the one that deploy took, or deploy mode did not stay on for it since (writes may have
landed), or the restore failed; the message says what was found, and nothing was restored."""


class Command(OperatorCommand):
    help = HELP
    # deploy_safe runs the system checks itself, at --check-level.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check-level",
            choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"),
            default="ERROR",
            help="Fail the `check --deploy` pre-check at this level or above (default ERROR).",
        )
        parser.add_argument(
            "--baseline",
            metavar="FILE",
            help=(
                "Require the data to equal this baseline (verify_integrity --save-baseline) instead "
                "of zero integrity errors. When the old schema does not fit the new models, it is "
                "compared after migrate, on the same rows (the fingerprints prove it)."
            ),
        )
        parser.add_argument("--allow-dirty", action="store_true", help="Skip the clean git tree pre-check.")
        parser.add_argument(
            "--backup-dir",
            type=Path,
            help="Where the backup goes (default: DEPLOYGUARD_BACKUP_DIR, var/backups).",
        )
        parser.add_argument(
            "--allow-data-migration",
            action="append",
            default=[],
            metavar="APP.NAME",
            help="Let this pending migration write rows; the report lists each row it changed. Repeatable.",
        )
        parser.add_argument(
            "--expected-minutes", type=float, default=15.0, help="Expected length, shown while frozen (15)."
        )
        parser.add_argument(
            "--report", type=Path, metavar="FILE", help="Write the whole run as JSON to FILE."
        )
        parser.add_argument(
            "--recover",
            action="store_true",
            help="Finish a killed deploy: restore or prove unchanged, unfreeze.",
        )
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(self, *args: Any, **options: Any) -> None:
        database = options["database"]
        if database not in connections:
            raise CommandError(
                f"--database {database!r} is not in DATABASES ({', '.join(connections)}).",
                returncode=EXIT_MISUSE,
            )
        for name in options["allow_data_migration"]:
            if name.count(".") != 1 or not all(name.split(".")):
                raise CommandError(
                    f"--allow-data-migration {name!r}: write it as APP.NAME.", returncode=EXIT_MISUSE
                )
        try:
            state.valid_expected_minutes(options["expected_minutes"])
        except ValueError as error:
            # Checked before any step: nan or inf would otherwise fail only after the backup.
            raise CommandError(f"--expected-minutes: {error}", returncode=EXIT_MISUSE) from None
        try:  # file arguments, before anything is touched: a FIFO, a device, a directory is misuse
            if options["report"]:
                files.check_output(options["report"], what="the report")
            if options["baseline"]:
                files.check_regular(options["baseline"], what="the baseline", max_bytes=baseline.MAX_BYTES)
        except files.BadFile as error:
            raise CommandError(str(error), returncode=EXIT_MISUSE) from None
        deploy = run.recover if options["recover"] else run.deploy
        report = deploy(
            run.Options(
                check_level=options["check_level"],
                baseline=options["baseline"],
                allow_dirty=options["allow_dirty"],
                backup_dir=options["backup_dir"],
                allow_data_migrations=options["allow_data_migration"],
                expected_minutes=options["expected_minutes"],
                verbosity=options["verbosity"],
                using=options["database"],
            ),
            self._write,
        )
        if options["report"]:
            try:
                text = json.dumps(report.as_dict(), indent=2, default=str) + "\n"
                files.write_text(options["report"], text, what="the report")
            except (OSError, files.BadFile) as error:
                why = getattr(error, "strerror", None) or error
                self.stderr.write(printable(f"Could not write the report {options['report']}: {why}"))
        if report.exit_status:
            raise CommandError(printable(report.message, keep_newlines=True), returncode=report.exit_status)
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(printable(report.message, keep_newlines=True)))

    def _write(self, style: str, text: str) -> None:
        # The steps' lines quote data (reasons, paths, migration output): shown, never obeyed.
        text = printable(text, keep_newlines=True)
        styler = getattr(self.style, style, None) if style else None
        self.stdout.write(styler(text) if styler else text)
