"""Quarantine the rows that break error-level integrity rules; restore a run; purge old quarantine."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import models

import deployguard
from deployguard import scrub
from deployguard.integrity import IntegrityError, default_registry
from deployguard.management.commands._integrity import EXIT_VIOLATIONS, IntegrityCommand, misuse
from deployguard.models_integrity import ScrubRun
from deployguard.terminal import Progress, printable

HELP = """Quarantine fake data: every row breaking an error-level integrity rule (and the rows
that depend on it) gets data_source=quarantine, is_legitimate=false and a history record
naming the run and the rules, in one transaction. A dry run unless --apply. Rows that pass
every rule are never touched. Refuses to quarantine more than DEPLOYGUARD_SCRUB_MAX_SHARE
(default 20%) of a table without --force, unless that is at most DEPLOYGUARD_SCRUB_MIN_ROWS
rows (default 10). --restore RUN_ID undoes a run exactly; --purge --older-than DAYS --apply
deletes rows quarantined more than DAYS ago. --apply --repair RULE first restores the recorded
values of rows changed without a record (RULE such as documents.E022; the dry run offers it)
instead of quarantining them. History records name the run, the operator (--as USER, else the
OS user) and --reason. Shows progress on a terminal (stderr).

Exit status: 0 done (or nothing to do, or a dry run); 1 refused (deploy mode is on, share
over the limit, a purge that would take unquarantined rows, a run already restored);
2 misuse."""

NOTHING_TO_DO = "Nothing to quarantine: every row passes the error-level rules."
DRY_RUN_DONE = "Dry run: nothing changed. Rerun with --apply to quarantine."
NOTHING_TO_PURGE = "Nothing to purge: no quarantined rows older than {days} days."
PURGE_DRY_RUN_DONE = "Dry run: nothing deleted. Rerun with --apply to delete."
# Beyond this the cut-off date is before year 1: timedelta overflows.
MAX_OLDER_THAN_DAYS = 100 * 365


def _plural(model: type[models.Model], count: int) -> str:
    name = model._meta.verbose_name if count == 1 else model._meta.verbose_name_plural
    return f"{count} {name}"


def _listing(labels: list[str], count: int) -> str:
    more = f", … ({count - len(labels)} more)" if count > len(labels) else ""
    return printable(", ".join(labels)) + more


def operator(name: str | None) -> str:
    """Who runs the command: --as USER (an existing user), else the OS user."""
    if name:
        if not get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: name}).exists():
            raise misuse(f"--as {name!r}: no such user; give the username of the operator.")
        return name
    try:
        return f"OS user {getpass.getuser()}"
    except (KeyError, OSError):
        return "an unknown OS user"


def _note(name: str | None, reason: str) -> str:
    """What every history record of the run adds: who ran it, and why."""
    note = f" by {operator(name)}"
    return f"{note}: {reason.strip()}" if reason.strip() else note


class Command(IntegrityCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--apply", action="store_true", help="Make the changes (default: dry run).")
        parser.add_argument("--force", action="store_true", help="Quarantine even over the share limit.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--restore", metavar="RUN_ID", help="Undo the quarantine run RUN_ID.")
        action.add_argument(
            "--purge", action="store_true", help="Delete quarantined rows (needs --older-than)."
        )
        action.add_argument("--list-runs", action="store_true", help="List quarantine runs.")
        parser.add_argument(
            "--older-than", type=int, metavar="DAYS", help="With --purge: age of the quarantine."
        )
        parser.add_argument(
            "--repair",
            action="append",
            default=[],
            metavar="RULE",
            help="With --apply: restore the recorded values of rows breaking RULE (a row changed without "
            "a record, such as documents.E022) instead of quarantining them.",
        )
        parser.add_argument(
            "--reason", default="", help="Why: recorded in every history record the run writes."
        )
        parser.add_argument(
            "--as",
            dest="operator",
            metavar="USER",
            help="The operator named in the history records (default: the OS user running the command).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._verbosity = options["verbosity"]
        if options["older_than"] is not None and not options["purge"]:
            raise misuse("--older-than goes with --purge.")
        writes = options["restore"] or (options["apply"] and not options["list_runs"])
        if writes:
            # Refuse before any work, with deploy mode's own message, rather than half way through.
            try:
                deployguard.ensure_writable("scrub_fake_data")
            except deployguard.DeployModeActive as active:
                raise CommandError(str(active), returncode=EXIT_VIOLATIONS) from None
        if options["repair"] and not (options["apply"] and not (options["restore"] or options["purge"])):
            raise misuse("--repair goes with --apply (and not with --restore or --purge).")
        self.note = _note(options["operator"], options["reason"])
        if options["list_runs"]:
            self._list_runs()
        elif options["restore"]:
            self._restore(options["restore"])
        elif options["purge"]:
            if options["older_than"] is None or not 0 <= options["older_than"] <= MAX_OLDER_THAN_DAYS:
                raise misuse(f"--purge needs --older-than DAYS (0 to {MAX_OLDER_THAN_DAYS}).")
            self._purge(options["older_than"], apply=options["apply"])
        elif options["apply"]:
            self._apply(force=options["force"], repair=options["repair"])
        else:
            self._dry_run(force=options["force"])

    def _progress(self, phase: str) -> Progress:
        tables = len(default_registry.quarantines)
        progress = Progress.for_command(self, self._verbosity, what="scrub_fake_data", total=tables)
        progress.phase = phase
        return progress

    def _dry_run(self, *, force: bool) -> None:
        for rule in scrub.repairable(default_registry.select()):
            count = rule.offending().count()
            if count:
                self.stdout.write(
                    f"Could restore the recorded values of {_plural(rule.model, count)} ({rule.id}: "
                    f"{rule.description}) instead of quarantining them: add --repair {rule.id} to --apply."
                )
        with self._progress("finding rows") as progress:
            previews = scrub.preview(default_registry.select(), on_table=lambda _model: progress.advance())
        if not any(p.count for p in previews):
            self.stdout.write(self.style.SUCCESS(NOTHING_TO_DO))
            return
        limit = scrub.max_share()
        for p in previews:
            if not p.count:
                continue
            self.stdout.write(f"Would quarantine {_plural(p.model, p.count)}: {_listing(p.labels, p.count)}")
            if scrub.implausible(p.count, p.total):
                consequence = (
                    "--force lets --apply quarantine them anyway."
                    if force
                    else "--apply will refuse without --force."
                )
                self.stdout.write(
                    self.style.WARNING(
                        f"  That is {p.share:.0%} of {p.total} rows, over "
                        f"DEPLOYGUARD_SCRUB_MAX_SHARE={limit:.0%}: {consequence}"
                    )
                )
        self.stdout.write(DRY_RUN_DONE)

    def _apply(self, *, force: bool, repair: list[str]) -> None:
        rules = default_registry.select()
        if repair:
            try:
                chosen = default_registry.select(only=repair)
                run_id, repaired = scrub.repair_in_batches(chosen, note=self.note)
            except (IntegrityError, scrub.ScrubRefused) as error:
                raise misuse(str(error)) from None
            for rule_id, count in repaired.items():
                model = default_registry.rules[rule_id].model
                done = f"Restored the recorded values of {_plural(model, count)} ({rule_id})"
                self.stdout.write(self.style.SUCCESS(f"{done} in repair run {run_id}."))
        try:
            scrub.refuse_implausible_counts(scrub.preview(rules), force=force)
        except scrub.ScrubRefused as refusal:
            raise CommandError(str(refusal), returncode=EXIT_VIOLATIONS) from None
        # In batches of scrub.BATCH_ROWS rows, one transaction each: memory and lock time per batch.
        with Progress.for_command(self, self._verbosity, what="scrub_fake_data", unit="") as progress:
            progress.set_phase("quarantining in batches")
            run = scrub.quarantine_in_batches(rules, note=self.note)
        if run is None:
            self.stdout.write(self.style.SUCCESS(NOTHING_TO_DO))
            return
        done = " and ".join(
            _plural(default_registry.get_model(label), count) for label, count in run.counts.items()
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Quarantined {done or 'no rows'} in run {run.id} ({', '.join(run.rule_ids)})."
            )
        )
        self.stdout.write(f"Undo with: manage.py scrub_fake_data --restore {run.id}")

    def _restore(self, run_id: str) -> None:
        try:
            restored = scrub.restore(run_id, note=self.note)
        except LookupError as error:
            raise misuse(str(error.args[0])) from None
        except scrub.ScrubRefused as refusal:
            raise CommandError(str(refusal), returncode=EXIT_VIOLATIONS) from None
        done = " and ".join(
            _plural(default_registry.get_model(label), count) for label, count in restored.items()
        )
        self.stdout.write(self.style.SUCCESS(f"Restored {done or 'no rows'} from run {printable(run_id)}."))

    def _purge(self, days: int, *, apply: bool) -> None:
        try:
            plan = scrub.plan_purge(days)
        except scrub.ScrubRefused as refusal:
            raise CommandError(str(refusal), returncode=EXIT_VIOLATIONS) from None
        if not any([*plan.rows.values(), *plan.cascaded.values()]):
            self.stdout.write(NOTHING_TO_PURGE.format(days=days))
            return
        verb = "Deleting" if apply else "Would delete"
        for model in reversed(list(default_registry.quarantines)):
            rows, cascaded = plan.rows.get(model, []), plan.cascaded.get(model, [])
            if not rows and not cascaded:
                continue
            count = len(rows) + len(cascaded)
            note = f" ({len(cascaded)} cascading from the rows below)" if cascaded else ""
            self.stdout.write(f"{verb} {_plural(model, count)}: {_listing(plan.labels[model], count)}{note}")
        if not apply:
            self.stdout.write(PURGE_DRY_RUN_DONE)
            return
        deleted = scrub.purge(plan)
        done = " and ".join(_plural(default_registry.get_model(label), n) for label, n in deleted.items())
        self.stdout.write(self.style.SUCCESS(f"Deleted {done}."))

    def _list_runs(self) -> None:
        runs = ScrubRun.objects.all()[:50]
        if not runs:
            self.stdout.write("No quarantine runs.")
        for run in runs:
            state = f"restored {run.restored_at:%Y-%m-%d %H:%M}" if run.restored_at else "in force"
            counts = printable(", ".join(f"{n} {label}" for label, n in run.counts.items()))
            self.stdout.write(
                f"{run.id}  {run.kind:<7}  {run.created_at:%Y-%m-%d %H:%M}  {state:<24}  {counts}  "
                f"{printable(', '.join(run.rule_ids))}"
            )
