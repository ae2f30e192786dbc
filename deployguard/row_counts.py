"""Rows disappearing is detected: the last known row count of every checked table, and its losses.

The checked tables are those of the models with integrity rules or a quarantine, and their
history tables. Rows only ever disappear from them through a purge, whose service lowers the
recorded count by what it deleted (`rows_removed`); `record()` (deploy_safe after a verified
deploy, verify_integrity when it finds no loss, or an operator's `--accept-row-counts`)
stores the counts as they are. A table that holds fewer rows than recorded lost rows that no
purge accounts for: `flush`, `DELETE` or `TRUNCATE` by SQL, a bad restore. verify_integrity
reports that as the error rule LOST_ROWS_ID.
"""

from __future__ import annotations

from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from deployguard.integrity import IntegrityRegistry, Rule, RuleResult, default_registry, history_model
from deployguard.models_integrity import TableRowCount
from deployguard.origin import current_origin

LOST_ROWS_ID = "deployguard.E101"
LOST_ROWS = (
    "{table} holds {now} rows, {lost} fewer than the {then} recorded at {at:%Y-%m-%d %H:%M:%S %Z} "
    "({origin}), and no purge accounts for them: compare with a backup (`manage.py backup_db --list`, "
    "`verify_integrity --baseline`) and restore it (`manage.py restore_db`); once the loss is explained, "
    "`verify_integrity --accept-row-counts` records the counts as they are"
)


def tracked(registry: IntegrityRegistry | None = None) -> list[type[models.Model]]:
    """The checked models and their history models."""
    registry = registry or default_registry
    found: list[type[models.Model]] = []
    for model in registry.models():
        history = history_model(model)
        found += [model] if history is None else [model, history]
    return found


def record(*, registry: IntegrityRegistry | None = None) -> dict[str, int]:
    """Store every checked table's row count now, under the marks' locks (a purge waits). {table: rows}."""
    models_by_table = {model._meta.db_table: model for model in tracked(registry)}
    origin, now = current_origin(), timezone.now()
    with transaction.atomic():
        marks = {
            m.table: m for m in TableRowCount.objects.select_for_update().filter(table__in=models_by_table)
        }
        counts = {table: model._base_manager.count() for table, model in models_by_table.items()}
        TableRowCount.objects.bulk_create(
            [
                TableRowCount(table=t, rows=n, recorded_at=now, origin=origin)
                for t, n in counts.items()
                if t not in marks
            ]
        )
        for table, mark in marks.items():
            if mark.rows != counts[table]:
                TableRowCount.objects.filter(table=table).update(
                    rows=counts[table], recorded_at=now, origin=origin
                )
    return counts


def rows_removed(model: type[models.Model], count: int) -> None:
    """A service deleted `count` rows of `model` (a purge): the recorded count follows, in its transaction."""
    if count:
        TableRowCount.objects.filter(table=model._meta.db_table).update(rows=Greatest(F("rows") - count, 0))


def check(*, registry: IntegrityRegistry | None = None) -> tuple[list[RuleResult], bool]:
    """(one failed LOST_ROWS_ID result per checked table holding fewer rows than recorded,
    whether any table holds more or has no record yet: worth recording)."""
    marks = {mark.table: mark for mark in TableRowCount.objects.all()}
    results, grown = [], False
    for model in tracked(registry):
        mark = marks.get(model._meta.db_table)
        now = model._base_manager.count()
        if mark is None or now > mark.rows:
            grown = True
            continue
        if now < mark.rows:
            description = LOST_ROWS.format(
                table=mark.table,
                now=now,
                lost=mark.rows - now,
                then=mark.rows,
                at=mark.recorded_at,
                origin=mark.origin or "origin unknown",
            )
            results.append(RuleResult(rule=_lost_rows_rule(model, description), count=mark.rows - now))
    return results, grown


def losses(*, registry: IntegrityRegistry | None = None) -> list[RuleResult]:
    """The LOST_ROWS_ID results of check()."""
    return check(registry=registry)[0]


def _lost_rows_rule(model: type[models.Model], description: str) -> Rule:
    # Not registered: it names no rows (they are gone), so it has no condition to filter by.
    return Rule(id=LOST_ROWS_ID, severity="error", model=model, description=description, condition=_nothing)


def _nothing() -> Q:
    return Q(pk__in=[])
