"""Explain one row: every history record with its user, reason and origin; the rules it breaks now."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import CommandParser

from deployguard.history_diff import differences
from deployguard.integrity import broken_by_row, default_registry, history_model
from deployguard.management.commands._integrity import IntegrityCommand, misuse
from deployguard.natural_keys import AmbiguousRow, RowNotFound, natural_key_field, resolve
from deployguard.scrub import quarantine_record
from deployguard.terminal import printable

HELP = """Show where one row came from and what is wrong with it now: every history record
(date, type, user, reason, origin, deploy id), the integrity rules it breaks, and whether it
is quarantined (by which run, for which rules). Name the row by its primary key or by the
natural key its model declares (an ML number such as ML-003, a draft name such as rfc3);
a deleted row is found through its history.

Exit status: 0 explained; 2 misuse (unknown model, no such row, a key that names two rows)."""

HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


class Command(IntegrityCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="APP.MODEL", help="For example documents.submission.")
        parser.add_argument("key", metavar="KEY", help="The row's primary key or natural key (ML-003, rfc3).")
        parser.add_argument(
            "--by",
            choices=("auto", "pk", "key"),
            default="auto",
            help="Read KEY as a primary key, a natural key, or whichever names a row (default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = apps.get_model(options["model"])
        except (LookupError, ValueError):
            raise misuse(
                f"Unknown model {options['model']!r}: give APP.MODEL, such as documents.submission."
            ) from None
        try:
            pk = resolve(model, options["key"], by=options["by"])
        except (RowNotFound, AmbiguousRow) as error:
            raise misuse(str(error)) from None
        label = model._meta.label_lower
        row = model._base_manager.filter(pk=pk).first()
        history = history_model(model)
        records = (
            list(history._base_manager.filter(id=pk).select_related("history_user").order_by("history_id"))
            if history
            else []
        )
        if row is None and not records:
            raise misuse(f"No {label} with primary key {pk}, and no history of one.")
        out = self.stdout
        key_field = natural_key_field(model)
        if row is not None:
            shown = str(row)
        elif key_field and records:  # the name it had when it was deleted
            shown = f"{getattr(records[-1], key_field)} (deleted)"
        else:
            shown = "(deleted)"
        out.write(self.style.MIGRATE_HEADING(f"{label} {printable(pk)}: {printable(shown)}"))

        record = quarantine_record(model, pk)
        quarantine = default_registry.quarantines.get(model)
        is_quarantined = (
            row is not None
            and quarantine is not None
            and model._base_manager.filter(quarantine.is_quarantined(), pk=pk).exists()
        )
        if is_quarantined:
            by = (
                f" by run {record.run_id} ({printable(record.run.kind)}, "
                f"{record.run.created_at:%Y-%m-%d %H:%M})"
                f" for {printable(', '.join(record.rule_ids))}"
                if record
                else ""
            )
            out.write(self.style.WARNING(f"Quarantined{by}."))
        else:
            out.write("Not quarantined.")

        out.write("\nHistory (oldest first):")
        if history is None:
            out.write("  (the model keeps no history)")
        elif not records:
            out.write(
                self.style.ERROR(
                    "  none: the row was written outside the ORM (raw SQL, a restore, a loader)."
                )
            )
        for rec in records:
            user = rec.history_user.get_username() if rec.history_user_id and rec.history_user else None
            if rec.history_user_id and user is None:
                user = f"user #{rec.history_user_id} (deleted)"
            fields = [
                f"{rec.history_date:%Y-%m-%d %H:%M:%S}",
                printable(HISTORY_TYPES.get(rec.history_type, rec.history_type)),
                f"user={printable(user or 'NONE')}",
                f"reason={printable(rec.history_change_reason or 'NONE')}",
                f"origin={printable(getattr(rec, 'history_origin', '') or '-')}",
                f"deploy={printable(getattr(rec, 'history_deploy_id', '') or '-')}",
            ]
            out.write("  " + "  ".join(fields))

        changed = differences(model, [pk]).get(pk, []) if row is not None else []
        if changed:
            out.write(self.style.ERROR("\nChanged without a record (latest history record -> row now):"))
            for difference in changed:
                out.write(self.style.ERROR(f"  {difference}"))

        out.write(
            "\nRules broken now"
            + (" (quarantined rows are exempt; shown for the record):" if is_quarantined else ":")
        )
        broken = broken_by_row(model, pk) if row is not None else []
        if not broken:
            out.write(self.style.SUCCESS("  none"))
        for rule in broken:
            style = self.style.ERROR if rule.severity == "error" else self.style.WARNING
            out.write(style(f"  {rule.id}  {rule.severity:<7}  {rule.description}"))
