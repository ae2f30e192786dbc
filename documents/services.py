"""Every write to documents: create, edit, approve, reject, publish and withdraw.

Each service takes keyword-only arguments and an acting user, checks that user's
permission itself, runs in one transaction, locks the rows it changes and records
the actor and the reason in the history. Nothing else may write these tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, models, transaction
from django.db.models import BigIntegerField, Max
from django.db.models.functions import Cast, Length, Substr
from django.utils import timezone

import deployguard
from deployguard import history_diff, row_counts
from documents import legitimacy
from documents.exceptions import (
    DeployModeRefused,
    PermissionRefused,
    ReasonRequired,
    RuleRefused,
    SamePersonRefused,
    TransitionRefused,
)
from documents.models import (
    DRAFT_NAME_PREFIX,
    DataSource,
    DraftNumber,
    PublishedDraft,
    Submission,
    service_write,
)
from documents.tasks import send_publication_notice

Actor = AbstractBaseUser | AnonymousUser

PERMISSION_REFUSED = "{actor} lacks the permission {permission!r}; ask an administrator to grant it."
REASON_REQUIRED = "Give a reason for the audit trail: {action} needs one."
NOT_APPROVED = "{ml_number} is {status}, not approved: approve it first, then publish."
ALREADY_PUBLISHED = "{ml_number} is already published as {name}; nothing to do."
PUBLISHED_WITHOUT_DRAFT = (
    "{ml_number} is marked published but has no draft, which only a write around the services "
    "can cause: see `manage.py explain_row documents.submission {pk}` and `manage.py scrub_fake_data`."
)
NOT_SUBMITTED = "{ml_number} is {status}: only submitted submissions can be {verb}."
SAME_PERSON = (
    "{ml_number} was approved by {actor}; the two-person rule needs another admin with the "
    "publish permission to publish it."
)
ALREADY_WITHDRAWN = "{name} is already withdrawn; nothing to do."
NOT_EDITABLE = (
    "{ml_number} is {status}: only submitted submissions can be edited, so that what is "
    "published is what was approved."
)
DEPLOY_MODE_REFUSED = (
    "{action} is paused while the site is being deployed; nothing was changed. {how} "
    "Try again once deploy mode is off."
)

BREAKS_RULES = "{ml_number} cannot be {verb}: it breaks {breaches}."
NOT_SAVED = "{ml_number} was not saved: it would break {breaches}."
DRAFT_EXISTS = (
    "{ml_number} already has a draft, {name}, written around the services (the submission is "
    "{status}): see `manage.py explain_row documents.publisheddraft {pk}`."
)

DEFAULT_FIRST_DRAFT_NUMBER = 1
MAX_DRAFT_DIGITS = 18  # the numbers a bigint holds
FREE_NAME_WINDOW = 50  # draft names checked per query when skipping taken ones
NAME_ATTEMPTS = 5  # inserts tried when SQL takes the allocated name between check and insert


def _require(actor: Actor, permission: str) -> None:
    if not (actor.is_authenticated and actor.is_active and actor.has_perm(permission)):
        raise PermissionRefused(PERMISSION_REFUSED.format(actor=actor, permission=permission))


def _refuse_in_deploy_mode(action: str) -> None:
    try:
        deployguard.ensure_writable(action)
    except deployguard.DeployModeActive as active:
        raise DeployModeRefused(
            DEPLOY_MODE_REFUSED.format(action=action, how=active.status.describe()), active.status
        ) from active


def _require_reason(reason: str, action: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ReasonRequired(REASON_REQUIRED.format(action=action))
    return reason


def _save(instance: models.Model, *, actor: Actor, reason: str) -> None:
    instance._history_user = actor  # type: ignore[attr-defined]
    instance._change_reason = reason  # type: ignore[attr-defined]
    with service_write(type(instance)):
        instance.save()


def _refuse_breaches(submission: Submission, message: str, verb: str = "") -> None:
    """Refuse a submission that breaks an error-level rule now (inside the caller's transaction)."""
    broken = legitimacy.breaches([submission.pk]).get(submission.pk)
    if broken:
        raise RuleRefused(
            message.format(ml_number=submission.ml_number, verb=verb, breaches=legitimacy.describe(broken)),
            broken,
        )


class _TrialOver(Exception):
    """Rolls a trial save back."""


def submission_breaches(
    *, actor: Actor, ml_number: str, title: str, submitted_by: str, submission: Submission | None = None
) -> list[legitimacy.Breach]:
    """The rules saving these values would break, found by saving them and rolling back.

    The admin's forms ask before saving, so that a refusal is a form error, not a failed save.
    """
    try:
        with transaction.atomic():
            if submission is None:
                create_submission(actor=actor, ml_number=ml_number, title=title, submitted_by=submitted_by)
            else:
                update_submission(actor=actor, submission=submission, title=title, submitted_by=submitted_by)
            raise _TrialOver
    except RuleRefused as refused:
        return list(refused.breaches)
    except _TrialOver:
        return []


def create_submission(
    *, actor: Actor, ml_number: str, title: str, submitted_by: str, reason: str = "Submitted"
) -> Submission:
    _require(actor, "documents.add_submission")
    _refuse_in_deploy_mode(f"Creating {ml_number}")
    submission = Submission(ml_number=ml_number, title=title, submitted_by=submitted_by)
    submission.full_clean()
    with transaction.atomic():
        _save(submission, actor=actor, reason=reason)
        _refuse_breaches(submission, NOT_SAVED)
    return submission


def update_submission(
    *, actor: Actor, submission: Submission, title: str, submitted_by: str, reason: str = "Edited"
) -> Submission:
    _require(actor, "documents.change_submission")
    _refuse_in_deploy_mode(f"Editing {submission.ml_number}")
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if locked.status != Submission.Status.SUBMITTED:
            raise TransitionRefused(NOT_EDITABLE.format(ml_number=locked.ml_number, status=locked.status))
        locked.title, locked.submitted_by = title, submitted_by
        locked.full_clean()
        _save(locked, actor=actor, reason=reason)
        _refuse_breaches(locked, NOT_SAVED)
    return locked


def _review(
    *, actor: Actor, submission: Submission, status: Submission.Status, verb: str, reason: str
) -> Submission:
    _require(actor, "documents.approve_submission")
    _refuse_in_deploy_mode(f"Reviewing {submission.ml_number}")
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if locked.status != Submission.Status.SUBMITTED:
            raise TransitionRefused(
                NOT_SUBMITTED.format(ml_number=locked.ml_number, status=locked.status, verb=verb)
            )
        if status == Submission.Status.APPROVED:
            _refuse_breaches(locked, BREAKS_RULES, verb)
        locked.status = status
        locked.approved_by = actor if status == Submission.Status.APPROVED else None
        _save(locked, actor=actor, reason=reason)
    return locked


def approve_submission(*, actor: Actor, submission: Submission, reason: str = "Approved") -> Submission:
    return _review(
        actor=actor,
        submission=submission,
        status=Submission.Status.APPROVED,
        verb="approved",
        reason=_require_reason(reason, "approving"),
    )


def reject_submission(*, actor: Actor, submission: Submission, reason: str) -> Submission:
    return _review(
        actor=actor,
        submission=submission,
        status=Submission.Status.REJECTED,
        verb="rejected",
        reason=_require_reason(reason, "rejecting"),
    )


def _first_draft_number() -> int:
    configured = getattr(settings, "DOCUMENTS_FIRST_DRAFT_NUMBER", DEFAULT_FIRST_DRAFT_NUMBER)
    # Only well-formed names count (a name written by SQL may be anything, "rfcX" included),
    # and only numbers a bigint holds.
    highest = (
        PublishedDraft.objects.filter(name__numbered_as=DRAFT_NAME_PREFIX)
        .annotate(digits=Length("name") - len(DRAFT_NAME_PREFIX))
        .filter(digits__lte=MAX_DRAFT_DIGITS)
        .aggregate(highest=Max(Cast(Substr("name", len(DRAFT_NAME_PREFIX) + 1), BigIntegerField())))[
            "highest"
        ]
    )
    return max(configured, (highest or 0) + 1)


def _free_numbers(start: int, count: int) -> list[int]:
    """The first `count` numbers from `start` whose names no draft holds, whoever wrote it."""
    free: list[int] = []
    while len(free) < count:
        window = range(start, start + FREE_NAME_WINDOW)
        taken = set(
            PublishedDraft.objects.filter(
                name__in=[f"{DRAFT_NAME_PREFIX}{number}" for number in window]
            ).values_list("name", flat=True)
        )
        free += [number for number in window if f"{DRAFT_NAME_PREFIX}{number}" not in taken]
        start += FREE_NAME_WINDOW
    return free[:count]


def _allocate_draft_number() -> int:
    """Hand out the next free draft number; the caller's transaction holds the counter's row lock."""
    counters = DraftNumber.objects.select_for_update().filter(prefix=DRAFT_NAME_PREFIX)
    with service_write(DraftNumber):
        counter = counters.first()
        if counter is None:
            # First publication: concurrent first publishers race to insert the same row,
            # and all but one insert nothing; then every one of them queues on its lock.
            DraftNumber.objects.bulk_create(
                [DraftNumber(prefix=DRAFT_NAME_PREFIX, last_number=_first_draft_number() - 1)],
                ignore_conflicts=True,
            )
            counter = counters.get()
        # Names taken behind the counter's back (SQL, a restore) are skipped, not collided with.
        counter.last_number = _free_numbers(counter.last_number + 1, 1)[0]
        counter.save(update_fields=["last_number"])
    return counter.last_number


def next_draft_names(count: int) -> list[str]:
    """The names the next `count` publications would get, without reserving them."""
    counter = DraftNumber.objects.filter(prefix=DRAFT_NAME_PREFIX).first()
    start = counter.last_number + 1 if counter else _first_draft_number()
    return [f"{DRAFT_NAME_PREFIX}{number}" for number in _free_numbers(start, count)] if count else []


def publish_submission(*, actor: Actor, submission: Submission, reason: str) -> PublishedDraft:
    """Publish an approved submission as the next rfc<digits> draft."""
    _require(actor, "documents.publish_submission")
    _refuse_in_deploy_mode(f"Publishing {submission.ml_number}")
    reason = _require_reason(reason, "publishing")
    with transaction.atomic():
        locked = Submission.objects.select_for_update().get(pk=submission.pk)
        if locked.status == Submission.Status.PUBLISHED:
            draft = PublishedDraft.objects.filter(submission=locked).first()
            if draft is None:
                raise TransitionRefused(
                    PUBLISHED_WITHOUT_DRAFT.format(ml_number=locked.ml_number, pk=locked.pk)
                )
            raise TransitionRefused(ALREADY_PUBLISHED.format(ml_number=locked.ml_number, name=draft.name))
        if locked.status != Submission.Status.APPROVED:
            raise TransitionRefused(NOT_APPROVED.format(ml_number=locked.ml_number, status=locked.status))
        if settings.DOCUMENTS_REQUIRE_SEPARATE_PUBLISHER and locked.approved_by_id == actor.pk:
            raise SamePersonRefused(SAME_PERSON.format(ml_number=locked.ml_number, actor=actor))
        _refuse_breaches(locked, BREAKS_RULES, "published")
        stray = PublishedDraft.objects.filter(submission=locked).first()
        if stray is not None:
            raise TransitionRefused(
                DRAFT_EXISTS.format(
                    ml_number=locked.ml_number, name=stray.name, status=locked.status, pk=stray.pk
                )
            )
        draft = PublishedDraft(submission=locked, published_by=actor, published_at=timezone.now())
        # A free name; one taken meanwhile by SQL (between the check and the insert) moves it on.
        for attempt in range(NAME_ATTEMPTS):
            draft.name = f"{DRAFT_NAME_PREFIX}{_allocate_draft_number()}"
            try:
                with transaction.atomic():
                    _save(draft, actor=actor, reason=reason)
                break
            except IntegrityError:
                taken = PublishedDraft.objects.filter(name=draft.name).exists()
                if attempt + 1 == NAME_ATTEMPTS or not taken:
                    raise
                draft.pk = None
        locked.status = Submission.Status.PUBLISHED
        _save(locked, actor=actor, reason=reason)
        # Queued once the publication is committed; a broker that is down must not undo it.
        transaction.on_commit(partial(send_publication_notice.enqueue, draft.pk), robust=True)
    return draft


def withdraw_draft(*, actor: Actor, draft: PublishedDraft, reason: str) -> PublishedDraft:
    _require(actor, "documents.withdraw_publisheddraft")
    _refuse_in_deploy_mode(f"Withdrawing {draft.name}")
    reason = _require_reason(reason, "withdrawing")
    with transaction.atomic():
        locked = PublishedDraft.objects.select_for_update().get(pk=draft.pk)
        if locked.status == PublishedDraft.Status.WITHDRAWN:
            raise TransitionRefused(ALREADY_WITHDRAWN.format(name=locked.name))
        locked.status = PublishedDraft.Status.WITHDRAWN
        locked.withdrawn_by = actor
        locked.withdrawn_at = timezone.now()
        _save(locked, actor=actor, reason=reason)
    return locked


# --- Quarantine, restore and purge: the services deployguard's scrub and monitor call ----------
# Operators run these from `manage.py scrub_fake_data`; there is no acting user, so the
# history records they write carry the reason (which names the run) and the origin.
# Only data_source and is_legitimate change: nothing else, not even updated_at, so a
# restore puts every row back exactly.

QUARANTINABLE_MODELS: tuple[type[models.Model], ...] = (Submission, PublishedDraft)
PK_BATCH = 500


def _batches(items: list[Any], size: int = PK_BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record_changes(model: type[models.Model], pks: list[Any], reason: str) -> None:
    """Write one "changed" history record per row, stamped with the reason and the origin."""
    from deployguard.origin import current_deploy_id, current_origin

    manager = model.history  # type: ignore[attr-defined]
    stamp = {"history_origin": current_origin(), "history_deploy_id": current_deploy_id()}
    for batch in _batches(pks):
        manager.bulk_history_create(
            list(model._base_manager.filter(pk__in=batch)),
            update=True,
            default_change_reason=reason,
            custom_historical_attrs=stamp,
        )


def _require_quarantinable(model: type[models.Model]) -> None:
    if model not in QUARANTINABLE_MODELS:
        raise ValueError(f"{model.__name__} rows cannot be quarantined.")


def quarantine_rows(*, model: type[models.Model], pks: list[Any], reason: str) -> dict[Any, dict[str, Any]]:
    """Mark the rows data_source=quarantine, is_legitimate=false; return each changed row's prior state."""
    _refuse_in_deploy_mode(f"Quarantining {model._meta.verbose_name_plural}")
    _require_quarantinable(model)
    reason = _require_reason(reason, "quarantining")
    prior: dict[Any, dict[str, Any]] = {}
    with transaction.atomic():
        for batch in _batches(list(pks)):
            rows = (
                model._base_manager.select_for_update()
                .filter(pk__in=batch)
                .exclude(data_source=DataSource.QUARANTINE)
                .values_list("pk", "data_source", "is_legitimate")
            )
            prior.update({pk: {"data_source": ds, "is_legitimate": legit} for pk, ds, legit in rows})
        with service_write(model):  # the change and its history records, together
            for batch in _batches(list(prior)):
                model._default_manager.filter(pk__in=batch).update(
                    data_source=DataSource.QUARANTINE, is_legitimate=False
                )
            _record_changes(model, list(prior), reason)
    return prior


def restore_rows(*, model: type[models.Model], prior: dict[Any, dict[str, Any]], reason: str) -> int:
    """Put quarantined rows back to the state `quarantine_rows` returned; rows no longer quarantined stay."""
    _refuse_in_deploy_mode(f"Restoring {model._meta.verbose_name_plural}")
    _require_quarantinable(model)
    reason = _require_reason(reason, "restoring")
    groups: dict[tuple[str, bool], list[Any]] = {}
    for pk, state in prior.items():
        groups.setdefault((state["data_source"], state["is_legitimate"]), []).append(pk)
    restored: list[Any] = []
    with transaction.atomic(), service_write(model):  # the change and its history records, together
        for (data_source, is_legitimate), pks in groups.items():
            for batch in _batches(pks):
                present = list(
                    model._base_manager.select_for_update()
                    .filter(pk__in=batch, data_source=DataSource.QUARANTINE)
                    .values_list("pk", flat=True)
                )
                model._default_manager.filter(pk__in=present).update(
                    data_source=data_source, is_legitimate=is_legitimate
                )
                restored += present
        _record_changes(model, restored, reason)
    return len(restored)


def restore_recorded_values(*, model: type[models.Model], pks: list[Any], reason: str) -> int:
    """Put back, field by field, the values each row's latest history record holds; one record each.

    For rows changed around the services (documents.E022, E023): the recorded state is the one
    the audit trail vouches for, so the row returns to it, with a history record giving the reason.
    """
    _refuse_in_deploy_mode(f"Restoring recorded values of {model._meta.verbose_name_plural}")
    _require_quarantinable(model)
    reason = _require_reason(reason, "restoring recorded values")
    restored = 0
    with transaction.atomic():
        for batch in _batches(list(pks)):
            changed = history_diff.differences(model, batch)
            for row in model._base_manager.select_for_update().filter(pk__in=list(changed)).order_by("pk"):
                for difference in changed[row.pk]:
                    setattr(row, difference.field, difference.recorded)
                _save(row, actor=None, reason=reason)  # type: ignore[arg-type]
                restored += 1
    return restored


def purge_quarantined(*, model: type[models.Model], pks: list[Any], reason: str) -> int:
    """Delete quarantined rows, one by one so that each leaves a deletion record with the reason."""
    _refuse_in_deploy_mode(f"Purging {model._meta.verbose_name_plural}")
    _require_quarantinable(model)
    reason = _require_reason(reason, "purging")
    deleted = 0
    with transaction.atomic():
        for batch in _batches(list(pks)):
            rows = model._base_manager.select_for_update().filter(
                pk__in=batch, data_source=DataSource.QUARANTINE
            )
            for row in rows:
                row._change_reason = reason  # type: ignore[attr-defined]
                with service_write(model):
                    row.delete()
                deleted += 1
        # verify_integrity's last known row count follows: these rows are accounted for.
        row_counts.rows_removed(model, deleted)
    return deleted
