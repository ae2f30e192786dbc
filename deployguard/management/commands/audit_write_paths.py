"""`manage.py audit_write_paths`: the write-path catalogue, and the CI gate on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployguard.write_paths import audit, config_from_settings
from deployguard.write_paths.report import finding_line, render_json, render_markdown, violation_line

FORMATS = ("text", "json", "markdown")

EXIT_CLEAN, EXIT_VIOLATIONS, EXIT_MISUSE = 0, 1, 2

VIOLATIONS_FOUND = (
    "{count} write-path violation(s): move each write into an allowed place "
    "(DEPLOYGUARD_WRITE_PATHS['allowed']) and out of start-up code, then run the audit again."
)
CANNOT_PARSE = (
    "{count} file(s) could not be scanned, so the audit is incomplete: fix or exclude them "
    "(DEPLOYGUARD_WRITE_PATHS['exclude'])."
)
UNKNOWN_FORMAT = "Unknown format {format!r}: use one of {formats}."
SUMMARY = (
    "Scanned {files} files in {seconds:.2f}s: {writes} writes, {entries} entry points, "
    "{violations} violations."
)
CLEAN = (
    "No violations: every write to a protected model is in an allowed place, "
    "and start-up code writes nothing."
)


class _MisuseParser(CommandParser):
    """Argument errors are misuse: exit status 2, from the shell and from call_command alike."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.called_from_command_line:
            super().error(message)  # argparse prints the usage and exits with status 2
        raise CommandError(f"Error: {message}", returncode=EXIT_MISUSE)


class Command(BaseCommand):
    help = (
        "Catalogue every place in the project's code that can write data (saves, creates, bulk "
        "and queryset writes, deletes, raw SQL, migrations' RunPython/RunSQL, fixtures) and every "
        "place that runs without a person asking (signal receivers, AppConfig.ready, management "
        "commands, threads and tasks), by a static scan: nothing is run, tests and site-packages "
        "are not scanned. Writes to protected models outside DEPLOYGUARD_WRITE_PATHS['allowed'], "
        "and any write reachable from start-up code, are violations. "
        "Exit status: 0 no violations; 1 violations (listed); 2 misuse or a file that cannot be scanned."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a CommandParser itself; its argument errors exit 1 under call_command.
        parser.__class__ = _MisuseParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="text",
            help="text (default) for people, json for machines, markdown for docs/WRITE_PATHS.md.",
        )
        parser.add_argument(
            "--root",
            type=Path,
            default=None,
            help="Directory to scan (default: DEPLOYGUARD_WRITE_PATHS['root'], else BASE_DIR).",
        )

    def handle(self, *args: Any, format: str, root: Path | None, verbosity: int, **options: Any) -> None:
        if format not in FORMATS:
            raise CommandError(
                UNKNOWN_FORMAT.format(format=format, formats=", ".join(FORMATS)), returncode=EXIT_MISUSE
            )
        try:
            config = config_from_settings(root)
        except ImproperlyConfigured as error:
            raise CommandError(str(error), returncode=EXIT_MISUSE) from None
        report = audit(config)
        if format == "json":
            self.stdout.write(render_json(report))
        elif format == "markdown":
            self.stdout.write(render_markdown(report), ending="")
        else:
            self._write_text(report, verbosity)
        for error in report.errors:
            self.stderr.write(self.style.ERROR(error))
        if report.errors:
            raise CommandError(CANNOT_PARSE.format(count=len(report.errors)), returncode=EXIT_MISUSE)
        if report.violations:
            raise CommandError(
                VIOLATIONS_FOUND.format(count=len(report.violations)), returncode=EXIT_VIOLATIONS
            )

    def _write_text(self, report: Any, verbosity: int) -> None:
        if verbosity >= 1:
            self.stdout.write(self.style.MIGRATE_HEADING(f"Writes ({len(report.writes)}):"))
            for finding in report.writes:
                self.stdout.write(f"  {finding_line(finding)}")
            self.stdout.write(
                self.style.MIGRATE_HEADING(
                    f"Entry points that run without a person asking ({len(report.entry_points)}):"
                )
            )
            for finding in report.entry_points:
                self.stdout.write(f"  {finding_line(finding)}")
        if report.violations:
            self.stdout.write(self.style.ERROR(f"Violations ({len(report.violations)}):"))
            for violation in report.violations:
                self.stdout.write(self.style.ERROR(f"  {violation_line(violation)}"))
        elif verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(CLEAN))
        self.stdout.write(
            SUMMARY.format(
                files=report.files_scanned,
                seconds=report.seconds,
                writes=len(report.writes),
                entries=len(report.entry_points),
                violations=len(report.violations),
            )
        )
