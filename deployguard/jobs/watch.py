"""The integrity watch: a periodic job that runs the error rules and reports each new violation once.

Each run counts every error-level rule's offending rows (deployguard.integrity), keeps up to
WATCH_SAMPLE of their primary keys per rule, and compares them with the last run's. Every
offending row the last run did not list is new: logged once (`deployguard.monitoring`), listed
in one mail to ADMINS for the run, and, with DEPLOYGUARD_QUARANTINE_ON_VIOLATION, quarantined
(a scrub run of kind "watch", reversible with `scrub_fake_data --restore`). Each run is recorded
(IntegrityWatchRun); `last_run()` is what the operations pages show.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import DatabaseError
from django.utils import timezone
from django_tasks import task

from deployguard import scrub
from deployguard.integrity import default_registry, evaluate
from deployguard.models_integrity import ScrubRun
from deployguard.models_jobs import IntegrityWatchRun
from deployguard.origin import current_origin

logger = logging.getLogger("deployguard.monitoring")

WATCH_SAMPLE = 1000
"""Offending primary keys kept per rule and run: a row past it is judged new or not by the keys kept."""
KEEP_DAYS = 30

NEW_VIOLATION = "Integrity watch: {label} {pk} newly breaks {rule_id} ({description}). Explain it with: manage.py explain_row {label} {pk}"  # noqa: E501
SUBJECT = "Integrity watch: {count} new violation(s) of {rule_ids}"
RULES_FAILED = "Integrity watch: the rules could not run ({error}); the next run tries again."


def _previous() -> IntegrityWatchRun | None:
    return IntegrityWatchRun.objects.exclude(status=IntegrityWatchRun.Status.FAILED).first()


def watch() -> IntegrityWatchRun:
    """Run the error rules once, report and record what is new; returns the run's record."""
    started = timezone.now()
    rules = scrub.error_rules(default_registry.select())
    try:
        results = evaluate(rules, sample_size=WATCH_SAMPLE)
    except DatabaseError as error:
        logger.exception("%s", RULES_FAILED.format(error=error))
        return IntegrityWatchRun.objects.create(
            started_at=started, finished_at=timezone.now(), status=IntegrityWatchRun.Status.FAILED,
            error=str(error), origin=current_origin(),
        )  # fmt: skip
    before = _previous()
    seen_before = {rule_id: set(pks) for rule_id, pks in (before.offending if before else {}).items()}
    counts = {result.rule.id: result.count for result in results}
    offending = {result.rule.id: [str(pk) for pk in result.sample_pks] for result in results if result.count}
    new: dict[str, list[str]] = {}
    selection: scrub.Selection = {}
    for result in results:
        fresh = [pk for pk in result.sample_pks if str(pk) not in seen_before.get(result.rule.id, set())]
        if not fresh:
            continue
        new[result.rule.id] = [str(pk) for pk in fresh]
        label = result.rule.model._meta.label_lower
        for pk in fresh:
            logger.error(
                "%s",
                NEW_VIOLATION.format(
                    label=label, pk=pk, rule_id=result.rule.id, description=result.rule.description
                ),
            )
            selection.setdefault(result.rule.model, {}).setdefault(pk, []).append(result.rule.id)
    quarantined = ""
    if new:
        _mail(new, results)
        if getattr(settings, "DEPLOYGUARD_QUARANTINE_ON_VIOLATION", False):
            run = scrub.quarantine(scrub.add_cascades(selection), kind=ScrubRun.Kind.WATCH)
            quarantined = run.id if run is not None else ""
    IntegrityWatchRun.objects.filter(started_at__lt=started - timedelta(days=KEEP_DAYS)).delete()
    return IntegrityWatchRun.objects.create(
        started_at=started,
        finished_at=timezone.now(),
        status=IntegrityWatchRun.Status.VIOLATIONS if offending else IntegrityWatchRun.Status.CLEAN,
        counts=counts,
        offending=offending,
        new=new,
        quarantine_run=quarantined,
        origin=current_origin(),
    )


def _mail(new: dict[str, list[str]], results: list[Any]) -> None:
    rules = {result.rule.id: result.rule for result in results}
    lines = []
    for rule_id, pks in new.items():
        rule = rules[rule_id]
        label = rule.model._meta.label_lower
        lines.append(f"{rule_id} ({rule.description}): {label} {', '.join(pks)}")
    lines.append(
        "Explain a row with: manage.py explain_row LABEL PK; quarantine with: manage.py scrub_fake_data"
    )
    count = sum(len(pks) for pks in new.values())
    mail_admins(SUBJECT.format(count=count, rule_ids=", ".join(new)), "\n".join(lines), fail_silently=True)


@task
def integrity_watch() -> dict[str, Any]:
    """The periodic job (DEPLOYGUARD_PERIODIC_JOBS; Celery beat): one watch run, summarised."""
    run = watch()
    return {"status": run.status, "new": sum(len(pks) for pks in run.new.values()), "run": run.pk}


def last_run() -> dict[str, Any] | None:
    """The latest watch run, for the operations admin: None before the first."""
    run = IntegrityWatchRun.objects.first()
    if run is None:
        return None
    return {
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "status": run.status,
        "status_display": run.get_status_display(),
        "counts": run.counts,
        "new": {rule_id: len(pks) for rule_id, pks in run.new.items()},
        "quarantine_run": run.quarantine_run,
        "error": run.error,
    }
