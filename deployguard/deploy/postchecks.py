"""The post-checks after migrate: the database answers and nothing is left unapplied, the
fingerprints equal those taken at the freeze, the baseline (when it had to wait), and integrity
no worse than before.

When the pre-check can tell what the rules read since (PostgreSQL: fingerprinted with them;
SQLite: its write counts, deployguard.written), the rules run again only if that changed; else
they run now, on their own thread and connection, beside the fingerprints (SQL that SQLite and
PostgreSQL run without the GIL).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import DatabaseError, connections

from deployguard import bookkeeping, fingerprints, reshaped, written
from deployguard.backup import BackupError
from deployguard.deploy import rules
from deployguard.deploy.migrate import pending_migrations
from deployguard.deploy.rules import RulesBefore
from deployguard.deploy.steps import FAILED, Alongside, Steps
from deployguard.fingerprints import FingerprintsAt
from deployguard.tables import migrate_writable_tables


@dataclass
class PostChecked:
    problems: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str:
        """Every problem in one line; "" when the deploy is verified."""
        return " | ".join(self.problems)


def run(
    steps: Steps,
    alongside: Alongside,
    *,
    using: str,
    frozen: FingerprintsAt,
    skip: Iterable[str],
    before: RulesBefore,
    baseline: str | None,
    baseline_after_migrate: bool,
    backup_path: Path | None = None,
    applied: Collection[str] = (),
) -> PostChecked:
    """Every post-check, each a step. `frozen`: the fingerprints taken at the freeze; `skip`:
    tables not compared (what a named data migration changed); migrate's bookkeeping tables are
    compared by deployguard.bookkeeping, which lets them gain the rows of `applied` migrations;
    `backup_path`: the backup taken with them, against which tables whose columns changed are
    compared by value."""
    checked = PostChecked()
    problems = checked.problems
    with steps.step("post-check: health") as step:
        try:
            with connections[using].cursor() as cursor:
                cursor.execute("SELECT 1")
            still = pending_migrations(using=using)
        except DatabaseError as error:
            still, step.detail = [], f"database unreachable: {error}"
            problems.append(f"Database unreachable after migrate: {error}")
        if still:
            problems.append(f"{len(still)} migration(s) still unapplied: {', '.join(still[:5])}")
        if problems:
            step.status = FAILED
    reusable = bool(before.inputs) or (before.mark is not None and bool(before.mark.counts))
    integrity = None if reusable else alongside.start(lambda: rules.count(using=using))
    ran_alongside = integrity is not None
    with steps.step("post-check: fingerprints") as step:
        kept = migrate_writable_tables()
        compared = fingerprints.compare_with_now(frozen, using=using, skip={*skip, *kept})
        bookkept = {table: fp for table, fp in frozen.tables.items() if table in kept}
        compared.differences += bookkeeping.differences(bookkept, applied=applied, using=using)
        for table in compared.by_value:
            try:
                line = reshaped.compare(
                    table.table, table.columns, backup_path=backup_path, retyped=table.retyped,
                    renamed=table.renamed, using=using,
                )  # fmt: skip
            except (DatabaseError, OSError, BackupError) as error:
                line = f"{table.table}: could not be compared by value with the backup ({error})"
            if line:
                compared.differences.append(line)
        checked.schema_changes = compared.schema_changes
        step.detail = {"schema_changes": compared.schema_changes, "differences": compared.differences}
        if frozen.horizon is not None or frozen.mark is not None:
            step.detail["proved_unwritten"] = len(compared.proved_unwritten)
        if compared.differences:
            step.status = FAILED
            problems.append("Data changed during the deploy: " + "; ".join(compared.differences))
    if baseline and baseline_after_migrate and not compared.differences:
        with steps.step("post-check: baseline") as step:
            failure = _baseline_after_migrate(baseline, using=using)
            step.detail = {"baseline": str(baseline), "failure": failure or None}
            if failure:
                step.status = FAILED
                problems.append(failure)
    with steps.step("post-check: integrity") as step:
        seconds, reused = None, ""
        try:
            if integrity is None:
                if before.inputs:
                    types = fingerprints.types_now(before.inputs, using=using)
                    rerun = rules.would_see_changes(before, frozen.tables, compared.unchanged, types)
                else:
                    name = str(connections[using].settings_dict["NAME"])
                    rerun = rules.would_see_changes_sqlite(before, written.mark_now(name))
                if rerun:
                    integrity = alongside.start(lambda: rules.count(using=using))
                    step.detail = {"ran_again_because": rerun}
                else:
                    reused = rules.REUSED
            after, seconds = (
                (dict(before.counts or {}), 0.0) if reused or integrity is None else integrity.result()
            )
        except DatabaseError as error:
            after = None
            problems.append(f"Integrity rules failed to run: {error}")
        if after is not None:
            worse = rules.worse(before.counts, after)
            step.detail = {**(step.detail or {}), "before": before.counts, "after": after, "seconds": seconds}
            if reused:
                step.detail["reused"] = reused
            elif ran_alongside:
                step.detail["alongside"] = "the fingerprints"
            if worse:
                problems.append(
                    "Integrity is worse than before: "
                    + ", ".join(f"{rule_id} {count} rows" for rule_id, count in worse.items())
                )
        if problems and problems[-1].startswith("Integrity"):
            step.status = FAILED
    return checked


def _baseline_after_migrate(path: str | Path, *, using: str) -> str:
    try:
        return rules.baseline_problem(path, using=using, after_migrate=True)
    except DatabaseError as error:
        return f"Baseline {path} could not be compared after migrate either: {error}"
