"""manage.py deploy_safe_migrate: deploy_safe's migrate subprocess, started early, migrating on its word."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployguard import allowances
from deployguard.deploy.child import MIGRATE_GO as GO
from deployguard.deploy.child import MIGRATE_NOT_TOLD as EXIT_NOT_TOLD
from deployguard.deploy.child import install_data_migration_allowance


class Command(BaseCommand):
    help = (
        "Run by deploy_safe, not by people: start up (every app's ready(), frozen by deploy mode), "
        f"then wait for the line {GO!r} on standard input, allow schema changes (and the data "
        "migrations deploy_safe names) and run `migrate --noinput`. deploy_safe "
        "starts it as soon as deploy mode is on, so that this start-up overlaps the drain and the "
        "backup's proof. Exit status: migrate's; "
        f"{EXIT_NOT_TOLD} when standard input closed without {GO!r}: nothing was migrated."
    )
    # migrate runs the system checks itself (skip_checks=False below), after the word.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", help="Database alias (default: default).")
        parser.add_argument(
            "--schema-changes-reason",
            required=True,
            help="Once told to go: let schema changes and migrate's bookkeeping rows through deploy mode.",
        )

    def handle(
        self, *args: Any, database: str, verbosity: int, schema_changes_reason: str, **options: Any
    ) -> None:
        if sys.stdin.readline().strip() != GO:
            raise CommandError("deploy_safe did not say go: nothing was migrated.", returncode=EXIT_NOT_TOLD)
        # Not from start-up (DEPLOYGUARD_SCHEMA_CHANGES), as `migrate` under deploy_safe used to:
        # this process starts up while the fingerprints and the backup are taken.
        allowances.allow_schema_changes_for_process(schema_changes_reason)
        install_data_migration_allowance()
        call_command("migrate", database=database, interactive=False, verbosity=verbosity, skip_checks=False)
