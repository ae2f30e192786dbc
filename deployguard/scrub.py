"""Quarantine runs: find the rows that break error-level rules, put them aside, restore, purge.

The engine decides which rows; the owning app's registered `Quarantine` services do
the writes. Every run is recorded (`ScrubRun`, `ScrubRow`) with each row's prior
state, so `restore` puts back exactly what a run changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, Q, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from deployguard.allowances import own_records
from deployguard.integrity import IntegrityRegistry, Rule, default_registry, flag_rows
from deployguard.models_integrity import ScrubRow, ScrubRun, new_run_id
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
    for model, rows in selection.items():
        if not rows:
            continue
        total = model._base_manager.count()
        if implausible(len(rows), total) and not force:
            raise ScrubRefused(_implausible_message(model, len(rows), total))


def _implausible_message(model: type[models.Model], count: int, total: int) -> str:
    return (
        f"Refusing to quarantine {count} of {total} {model._meta.verbose_name_plural} "
        f"({count / total:.0%} > DEPLOYGUARD_SCRUB_MAX_SHARE={max_share():.0%}, and more than "
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


# --- a whole-table scrub in bounded batches ------------------------------------------------------
# `scrub_fake_data --apply` over a million rows: the selection is written to the run's ScrubRow
# records batch by batch (nothing changes yet, so every batch sees the same data), then the
# rows are quarantined batch by batch, each batch its own transaction: memory is one batch,
# and the write lock is held for one batch at a time. A run cut short is restorable: the rows
# it quarantined have their prior state recorded; the rest (an empty prior) are skipped.

BATCH_ROWS = 2000


def _pk_cast(model: type[models.Model]) -> models.Field[Any, Any]:
    """How ScrubRow's text object_pk reads as the model's primary key, for joins in SQL."""
    if isinstance(model._meta.pk, models.AutoField | models.BigAutoField | models.IntegerField):
        return models.BigIntegerField()
    return models.CharField()


def _recorded(run: ScrubRun, model: type[models.Model]) -> models.QuerySet[Any]:
    """The primary keys run `run` recorded for `model`, as a subquery."""
    return (
        ScrubRow.objects.filter(run=run, model_label=model._meta.label_lower)
        .annotate(key=Cast("object_pk", _pk_cast(model)))
        .values("key")
    )


def _record_flagged(
    run: ScrubRun, model: type[models.Model], condition: Q, flags: dict[str, tuple[Q, str]]
) -> int:
    """Write a ScrubRow per row matching `condition`, in keyset batches; the rule ids from `flags`."""
    annotations = {
        name: ExpressionWrapper(flag, output_field=BooleanField()) for name, (flag, _) in flags.items()
    }
    label, last, written = model._meta.label_lower, None, 0
    while True:
        rows = model._base_manager.filter(condition)
        if last is not None:
            rows = rows.filter(pk__gt=last)
        batch = list(rows.annotate(**annotations).order_by("pk").values("pk", *annotations)[:BATCH_ROWS])
        if not batch:
            return written
        ScrubRow.objects.bulk_create(
            [
                ScrubRow(
                    run=run,
                    model_label=label,
                    object_pk=str(row["pk"]),
                    rule_ids=[rule_id for name, (_, rule_id) in flags.items() if row[name]],
                    prior={},
                )
                for row in batch
            ],
            batch_size=BATCH_ROWS,
        )
        written += len(batch)
        last = batch[-1]["pk"]


def _select_into(run: ScrubRun, rules: Sequence[Rule], registry: IntegrityRegistry) -> None:
    """Record every row breaking an error rule, then the rows that follow them (cascades)."""
    for model in registry.quarantines:
        model_rules = [rule for rule in rules if rule.model is model]
        if not model_rules:
            continue
        conditions = [rule.scoped_condition(registry) for rule in model_rules]
        flags = {
            f"rule_{i}": (c, rule.id) for i, (c, rule) in enumerate(zip(conditions, model_rules, strict=True))
        }
        _record_flagged(run, model, _any(conditions), flags)
    for parent, quarantine in registry.quarantines.items():
        if quarantine.cascade is None:
            continue
        parents = parent._base_manager.filter(pk__in=Subquery(_recorded(run, parent)))
        for child, children in quarantine.cascade(parents).items():
            not_yet = ~Q(pk__in=Subquery(_recorded(run, child)))
            reason = f"{CASCADE_PREFIX}{parent._meta.label_lower}"
            _record_flagged(
                run,
                child,
                children & registry.in_scope(child) & not_yet,
                {"cascade": (Q(pk__isnull=False), reason)},
            )


def _in_batches(records: models.QuerySet[ScrubRow], *fields: str) -> Iterator[list[tuple[Any, ...]]]:
    """`(id, *fields)` of `records` in batches of BATCH_ROWS, by id: each batch is read after the
    caller is done with the one before (and may have deleted some of its records)."""
    last = 0
    while True:
        batch = list(records.filter(id__gt=last).order_by("id").values_list("id", *fields)[:BATCH_ROWS])
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def _quarantine_recorded(
    run: ScrubRun, model: type[models.Model], registry: IntegrityRegistry, note: str = ""
) -> int:
    """Quarantine the rows the run recorded for `model`, one transaction per batch; rows done."""
    done, to_pk = 0, model._meta.pk.to_python
    recorded = ScrubRow.objects.filter(run=run, model_label=model._meta.label_lower)
    for batch in _in_batches(recorded, "object_pk", "rule_ids"):
        by_rules: dict[tuple[str, ...], list[Any]] = {}
        record_of: dict[Any, int] = {}
        for record_id, object_pk, rule_ids in batch:
            pk = to_pk(object_pk)
            by_rules.setdefault(tuple(rule_ids), []).append(pk)
            record_of[pk] = record_id
        with transaction.atomic():
            by_state: dict[str, tuple[dict[str, Any], list[int]]] = {}
            for rule_ids, pks in by_rules.items():
                reason = f"Quarantined by deployguard run {run.id} ({run.kind}){note}: {', '.join(rule_ids)}"
                prior = registry.quarantines[model].quarantine(model=model, pks=pks, reason=reason)
                for pk, state in prior.items():
                    by_state.setdefault(repr(sorted(state.items())), (state, []))[1].append(record_of[pk])
            for state, record_ids in by_state.values():
                ScrubRow.objects.filter(id__in=record_ids).update(prior=state)
            changed = {record_id for _, record_ids in by_state.values() for record_id in record_ids}
            # Rows quarantined already (by someone else meanwhile) are not this run's to restore.
            ScrubRow.objects.filter(id__in=[r for r in record_of.values() if r not in changed]).delete()
        done += len(changed)
    return done


def quarantine_in_batches(
    rules: Sequence[Rule],
    *,
    kind: str = ScrubRun.Kind.SCRUB,
    registry: IntegrityRegistry | None = None,
    note: str = "",
) -> ScrubRun | None:
    """Quarantine every row breaking an error rule (and those that follow), in bounded batches."""
    registry = registry or default_registry
    rules = error_rules(rules)
    run = ScrubRun.objects.create(kind=kind, origin=current_origin())
    _select_into(run, rules, registry)
    if not run.rows.exists():
        run.delete()
        return None
    counts = {
        model._meta.label_lower: _quarantine_recorded(run, model, registry, note)
        for model in registry.quarantines
    }
    run.rule_ids = sorted(
        {
            r
            for ids in run.rows.values_list("rule_ids", flat=True).distinct()
            for r in ids
            if not r.startswith(CASCADE_PREFIX)
        }
    )
    run.counts = {label: n for label, n in counts.items() if n}
    run.save(update_fields=["rule_ids", "counts"])
    return run


def repairable(rules: Sequence[Rule], *, registry: IntegrityRegistry | None = None) -> list[Rule]:
    """The rules among `rules` whose rows can have their recorded values restored instead."""
    registry = registry or default_registry
    return [
        rule
        for rule in rules
        if (q := registry.quarantines.get(rule.model)) is not None and q.repair and rule.id in q.repairable
    ]


def repair_in_batches(
    rules: Sequence[Rule], *, registry: IntegrityRegistry | None = None, note: str = ""
) -> tuple[str, dict[str, int]]:
    """Restore the recorded values of every row breaking `rules` (repairable ones), in batches.

    Returns the repair run's id (named in every history record it writes) and {rule id: rows}.
    """
    registry = registry or default_registry
    run_id = new_run_id()
    repaired: dict[str, int] = {}
    for rule in rules:
        quarantine = registry.quarantines[rule.model]
        if quarantine.repair is None or rule.id not in quarantine.repairable:
            known = ", ".join(r.id for r in repairable(list(registry.rules.values()), registry=registry))
            raise ScrubRefused(
                f"{rule.id} cannot be repaired: only rules for rows changed without a record ({known}) can."
            )
        reason = f"Recorded values restored by deployguard repair run {run_id} ({rule.id}){note}"
        last, count = None, 0
        while True:
            rows = rule.offending(registry).order_by("pk")
            if last is not None:
                rows = rows.filter(pk__gt=last)
            batch = list(rows.values_list("pk", flat=True)[:BATCH_ROWS])
            if not batch:
                break
            with transaction.atomic():
                count += quarantine.repair(model=rule.model, pks=batch, reason=reason)
            last = batch[-1]
        repaired[rule.id] = count
    return run_id, repaired


def refuse_implausible_counts(previews: Sequence[ModelPreview], *, force: bool) -> None:
    """refuse_implausible_share for counts (preview()), so that nothing is loaded to decide."""
    for p in previews:
        if implausible(p.count, p.total) and not force:
            raise ScrubRefused(_implausible_message(p.model, p.count, p.total))


def restore(run_id: str, *, registry: IntegrityRegistry | None = None, note: str = "") -> dict[str, int]:
    """Undo a run: every row it quarantined gets its prior state back. {model label: rows restored}.

    The run is claimed first (restored_at set, in its own transaction), so that it is restored
    once; then its rows are restored in batches, one transaction each. A restore cut short
    gives the claim back: restoring only rows still quarantined, running it again is safe.
    """
    registry = registry or default_registry
    with own_records("undoing a quarantine run"), transaction.atomic():
        run = ScrubRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise LookupError(f"No quarantine run {run_id!r}; `scrub_fake_data --list-runs` shows them.")
        if run.restored_at is not None:
            raise ScrubRefused(
                f"Run {run.id} was already restored at {run.restored_at:%Y-%m-%d %H:%M:%S %Z}."
            )
        run.restored_at = timezone.now()
        run.restored_origin = current_origin()
        run.save(update_fields=["restored_at", "restored_origin"])
    try:
        return {
            label: count
            for label, count in (
                (model._meta.label_lower, _restore_batches(run, model, registry, note))
                for model in registry.quarantines
            )
            if count
        }
    except BaseException:
        ScrubRun.objects.filter(pk=run.pk).update(restored_at=None, restored_origin="")
        raise


def _restore_batches(run: ScrubRun, model: type[models.Model], registry: IntegrityRegistry, note: str) -> int:
    restored, to_pk = 0, model._meta.pk.to_python
    reason = f"Restored by deployguard: undoing run {run.id}{note}"
    recorded = run.rows.filter(model_label=model._meta.label_lower, purged_at__isnull=True)
    for batch in _in_batches(recorded, "object_pk", "prior"):
        # An empty prior: a run cut short before quarantining that row; nothing to put back.
        prior = {to_pk(pk): state for _, pk, state in batch if state}
        if prior:
            with transaction.atomic():
                restored += registry.quarantines[model].restore(model=model, prior=prior, reason=reason)
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
