"""Quarantine runs: find the rows that break error-level rules, put them aside, restore, purge.

The engine decides which rows; the owning app's registered `Quarantine` services do
the writes. Every run is recorded (`ScrubRun`, `ScrubRow`) with each row's prior
state, so `restore` puts back exactly what a run changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Q
from django.utils import timezone

from deployguard.allowances import own_records
from deployguard.integrity import IntegrityRegistry, Rule, default_registry, flag_rows
from deployguard.models_integrity import ScrubRow, ScrubRun
from deployguard.natural_keys import natural_key_field
from deployguard.origin import current_origin

DEFAULT_MAX_SHARE = 0.2
DEFAULT_MIN_ROWS = 10
LISTED_ROWS = 20
CASCADE_PREFIX = "cascade:"

Selection = dict[type[models.Model], dict[Any, list[str]]]


class ScrubRefused(Exception):
    """The scrub would do something it must not do without an explicit override."""


def max_share() -> float:
    return float(getattr(settings, "DEPLOYGUARD_SCRUB_MAX_SHARE", DEFAULT_MAX_SHARE))


def min_rows() -> int:
    return int(getattr(settings, "DEPLOYGUARD_SCRUB_MIN_ROWS", DEFAULT_MIN_ROWS))


def implausible(count: int, total: int) -> bool:
    """Whether quarantining `count` of `total` rows is more than a scrub should do unforced: over
    DEPLOYGUARD_SCRUB_MAX_SHARE of the table, and more than DEPLOYGUARD_SCRUB_MIN_ROWS rows (a
    handful of fakes on a small site is no sign of a broken rule)."""
    return count > min_rows() and total > 0 and count / total > max_share()


def error_rules(rules: Sequence[Rule]) -> list[Rule]:
    return [rule for rule in rules if rule.severity == "error"]


def _any(conditions: Sequence[Q]) -> Q:
    combined = Q(pk__in=[])
    for condition in conditions:
        combined |= condition
    return combined


@dataclass
class ModelPreview:
    model: type[models.Model]
    total: int
    count: int
    labels: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0


def _labels(
    model: type[models.Model], queryset: models.QuerySet[Any], registry: IntegrityRegistry
) -> list[str]:
    quarantine = registry.quarantines.get(model)
    display = (quarantine.display_field if quarantine else None) or natural_key_field(model) or "pk"
    return [str(value) for value in queryset.order_by("pk").values_list(display, flat=True)[:LISTED_ROWS]]


def _cascade_conditions(rules: Sequence[Rule], registry: IntegrityRegistry) -> dict[type[models.Model], Q]:
    """For each model, the Q of rows that must follow a flagged parent into quarantine."""
    extra: dict[type[models.Model], Q] = {}
    for parent, quarantine in registry.quarantines.items():
        if quarantine.cascade is None:
            continue
        conditions = [rule.scoped_condition(registry) for rule in rules if rule.model is parent]
        if not conditions:
            continue
        flagged = parent._base_manager.filter(_any(conditions))
        for child, children in quarantine.cascade(flagged).items():
            extra[child] = extra.get(child, Q(pk__in=[])) | children
    return extra


def preview(
    rules: Sequence[Rule],
    *,
    registry: IntegrityRegistry | None = None,
    on_table: Callable[[type[models.Model]], None] | None = None,
) -> list[ModelPreview]:
    """What an apply would quarantine, counted in the database: one pass per table plus a label sample.
    `on_table(model)` is called as each table is done."""
    registry = registry or default_registry
    rules = error_rules(rules)
    cascades = _cascade_conditions(rules, registry)
    previews = []
    for model in registry.quarantines:
        scope = registry.in_scope(model)
        direct = _any([rule.scoped_condition(registry) for rule in rules if rule.model is model])
        cascade = cascades.get(model)
        chosen = scope & (direct | cascade) if cascade is not None else scope & direct
        # One pass; the cascade's subquery (the flagged parents) is computed once per query,
        # so the labels come from the directly flagged rows when there are enough of them.
        counts = model._base_manager.aggregate(total=Count("pk"), count=Count("pk", filter=chosen))
        result = ModelPreview(model=model, total=counts["total"], count=counts["count"])
        if result.count:
            result.labels = _labels(model, model._base_manager.filter(scope & direct), registry)
            if len(result.labels) < min(result.count, LISTED_ROWS):
                result.labels = _labels(model, model._base_manager.filter(chosen), registry)
        previews.append(result)
        if on_table is not None:
            on_table(model)
    return previews


def select_rows(
    rules: Sequence[Rule],
    *,
    registry: IntegrityRegistry | None = None,
    on_table: Callable[[type[models.Model]], None] | None = None,
) -> Selection:
    """{model: {pk: rule ids}} for every row breaking an error rule, plus the rows that follow them.
    `on_table(model)` is called as each table is done."""
    registry = registry or default_registry
    rules = error_rules(rules)
    selection: Selection = {}
    for model in registry.quarantines:
        selection[model] = flag_rows(rules, model, registry=registry)
        if on_table is not None:
            on_table(model)
    return add_cascades(selection, registry=registry)


def add_cascades(selection: Selection, *, registry: IntegrityRegistry | None = None) -> Selection:
    registry = registry or default_registry
    for parent, quarantine in registry.quarantines.items():
        pks = list(selection.get(parent, ()))
        if quarantine.cascade is None or not pks:
            continue
        for child, children in quarantine.cascade(parent._base_manager.filter(pk__in=pks)).items():
            rows = selection.setdefault(child, {})
            reason = f"{CASCADE_PREFIX}{parent._meta.label_lower}"
            in_scope = child._base_manager.filter(children, registry.in_scope(child))
            for pk in in_scope.values_list("pk", flat=True):
                rows.setdefault(pk, [reason])
    return selection


def refuse_implausible_share(
    selection: Selection, *, force: bool, registry: IntegrityRegistry | None = None
) -> None:
    registry = registry or default_registry
    limit = max_share()
    for model, rows in selection.items():
        if not rows:
            continue
        total = model._base_manager.count()
        if implausible(len(rows), total) and not force:
            raise ScrubRefused(
                f"Refusing to quarantine {len(rows)} of {total} {model._meta.verbose_name_plural} "
                f"({len(rows) / total:.0%} > DEPLOYGUARD_SCRUB_MAX_SHARE={limit:.0%}, and more than "
                f"DEPLOYGUARD_SCRUB_MIN_ROWS={min_rows()} rows): a broken rule must not empty production. "
                "Check the rules with verify_integrity, then rerun with --force."
            )


def quarantine(
    selection: Selection,
    *,
    kind: str = ScrubRun.Kind.SCRUB,
    registry: IntegrityRegistry | None = None,
) -> ScrubRun | None:
    """Quarantine the selected rows in one transaction and record the run; None if nothing to do."""
    registry = registry or default_registry
    if not any(selection.values()):
        return None
    with own_records("a quarantine run"), transaction.atomic():
        run = ScrubRun.objects.create(kind=kind, origin=current_origin())
        all_rule_ids: set[str] = set()
        counts: dict[str, int] = {}
        for model, rows in selection.items():
            by_rules: dict[tuple[str, ...], list[Any]] = {}
            for pk, rule_ids in rows.items():
                by_rules.setdefault(tuple(rule_ids), []).append(pk)
            records = []
            for rule_ids, pks in by_rules.items():
                all_rule_ids.update(r for r in rule_ids if not r.startswith(CASCADE_PREFIX))
                reason = f"Quarantined by deployguard run {run.id} ({run.kind}): {', '.join(rule_ids)}"
                prior = registry.quarantines[model].quarantine(model=model, pks=pks, reason=reason)
                records += [
                    ScrubRow(
                        run=run,
                        model_label=model._meta.label_lower,
                        object_pk=str(pk),
                        rule_ids=list(rule_ids),
                        prior=state,
                    )
                    for pk, state in prior.items()
                ]
            ScrubRow.objects.bulk_create(records, batch_size=500)
            counts[model._meta.label_lower] = len(records)
        run.rule_ids = sorted(all_rule_ids)
        run.counts = counts
        run.save(update_fields=["rule_ids", "counts"])
    return run


def restore(run_id: str, *, registry: IntegrityRegistry | None = None) -> dict[str, int]:
    """Undo a run: every row it quarantined gets its prior state back. {model label: rows restored}."""
    registry = registry or default_registry
    with own_records("undoing a quarantine run"), transaction.atomic():
        run = ScrubRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise LookupError(f"No quarantine run {run_id!r}; `scrub_fake_data --list-runs` shows them.")
        if run.restored_at is not None:
            raise ScrubRefused(
                f"Run {run.id} was already restored at {run.restored_at:%Y-%m-%d %H:%M:%S %Z}."
            )
        restored: dict[str, int] = {}
        for model in registry.quarantines:
            label = model._meta.label_lower
            rows = run.rows.filter(model_label=label, purged_at__isnull=True).values_list(
                "object_pk", "prior"
            )
            prior = {model._meta.pk.to_python(pk): state for pk, state in rows}
            if prior:
                reason = f"Restored by deployguard: undoing run {run.id}"
                restored[label] = registry.quarantines[model].restore(model=model, prior=prior, reason=reason)
        run.restored_at = timezone.now()
        run.restored_origin = current_origin()
        run.save(update_fields=["restored_at", "restored_origin"])
    return restored


@dataclass
class PurgePlan:
    cutoff: Any
    rows: dict[type[models.Model], list[Any]]
    cascaded: dict[type[models.Model], list[Any]]
    labels: dict[type[models.Model], list[str]]


def plan_purge(older_than_days: int, *, registry: IntegrityRegistry | None = None) -> PurgePlan:
    """The quarantined rows of runs older than the cutoff, and the rows deleting them takes along."""
    registry = registry or default_registry
    cutoff = timezone.now() - timedelta(days=older_than_days)
    recorded = ScrubRow.objects.filter(
        run__created_at__lt=cutoff, run__restored_at__isnull=True, purged_at__isnull=True
    )
    rows: dict[type[models.Model], list[Any]] = {}
    for model, quarantine in registry.quarantines.items():
        pks = recorded.filter(model_label=model._meta.label_lower).values_list("object_pk", flat=True)
        rows[model] = list(
            model._base_manager.filter(
                quarantine.is_quarantined(), pk__in=[model._meta.pk.to_python(p) for p in pks]
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    cascaded: dict[type[models.Model], list[Any]] = {}
    for parent, quarantine in registry.quarantines.items():
        if quarantine.cascade is None or not rows.get(parent):
            continue
        for child, children in quarantine.cascade(parent._base_manager.filter(pk__in=rows[parent])).items():
            extra = child._base_manager.filter(children).exclude(pk__in=rows.get(child, []))
            unquarantined = extra.exclude(registry.quarantines[child].is_quarantined())
            if unquarantined.exists():
                labels = _labels(child, unquarantined, registry)
                raise ScrubRefused(
                    f"Refusing to purge: {', '.join(labels)} ({child._meta.verbose_name_plural}) "
                    "depend on rows being purged but are not quarantined; quarantine or restore them first."
                )
            cascaded[child] = list(extra.order_by("pk").values_list("pk", flat=True))
    labels = {
        model: _labels(
            model,
            model._base_manager.filter(pk__in=[*rows.get(model, []), *cascaded.get(model, [])]),
            registry,
        )
        for model in registry.quarantines
    }
    return PurgePlan(cutoff=cutoff, rows=rows, cascaded=cascaded, labels=labels)


def purge(plan: PurgePlan, *, registry: IntegrityRegistry | None = None) -> dict[str, int]:
    """Delete the planned rows, dependants first (reverse registration order), in one transaction."""
    registry = registry or default_registry
    deleted: dict[str, int] = {}
    reason = f"Purged by deployguard: quarantined before {plan.cutoff:%Y-%m-%d %H:%M:%S %Z}"
    with own_records("purging quarantined rows"), transaction.atomic():
        for model in reversed(list(registry.quarantines)):
            pks = [*plan.rows.get(model, []), *plan.cascaded.get(model, [])]
            if not pks:
                continue
            deleted[model._meta.label_lower] = registry.quarantines[model].purge(
                model=model, pks=pks, reason=reason
            )
            ScrubRow.objects.filter(
                model_label=model._meta.label_lower,
                object_pk__in=[str(pk) for pk in pks],
                purged_at__isnull=True,
            ).update(purged_at=timezone.now())
    return deleted


def quarantine_record(model: type[models.Model], pk: Any) -> ScrubRow | None:
    """The latest run that quarantined this row and was not undone, if any."""
    return (
        ScrubRow.objects.select_related("run")
        .filter(model_label=model._meta.label_lower, object_pk=str(pk), run__restored_at__isnull=True)
        .order_by("-run__created_at")
        .first()
    )
