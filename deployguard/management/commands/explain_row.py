"""Explain one row: every history record with its user, reason and origin; the rules it breaks now."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import CommandParser

from deployguard.history_diff import differences
from deployguard.integrity import broken_by_row, default_registry, history_model
from deployguard.management.commands._integrity import IntegrityCommand, misuse
from deployguard.scrub import quarantine_record

HELP = """Show where one row came from and what is wrong with it now: every history record
(date, type, user, reason, origin, deploy id), the integrity rules it breaks, and whether it
is quarantined (by which run, for which rules).

Exit status: 0 explained; 2 misuse (unknown model, no such row)."""

HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


class Command(IntegrityCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="APP.MODEL", help="For example documents.submission.")
        parser.add_argument("pk", help="The row's primary key.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = apps.get_model(options["model"])
        except (LookupError, ValueError):
            raise misuse(
                f"Unknown model {options['model']!r}: give APP.MODEL, such as documents.submission."
            ) from None
        try:
            pk = model._meta.pk.to_python(options["pk"])
        except ValidationError:
            raise misuse(f"{options['pk']!r} is not a primary key of {model._meta.label_lower}.") from None
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
        out.write(self.style.MIGRATE_HEADING(f"{label} {pk}: {row if row is not None else '(deleted)'}"))

        record = quarantine_record(model, pk)
        quarantine = default_registry.quarantines.get(model)
        is_quarantined = (
            row is not None
            and quarantine is not None
            and model._base_manager.filter(quarantine.is_quarantined(), pk=pk).exists()
        )
        if is_quarantined:
            by = (
                f" by run {record.run_id} ({record.run.kind}, {record.run.created_at:%Y-%m-%d %H:%M})"
                f" for {', '.join(record.rule_ids)}"
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
                HISTORY_TYPES.get(rec.history_type, rec.history_type),
                f"user={user or 'NONE'}",
                f"reason={rec.history_change_reason or 'NONE'!s}",
                f"origin={getattr(rec, 'history_origin', '') or '-'}",
                f"deploy={getattr(rec, 'history_deploy_id', '') or '-'}",
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
