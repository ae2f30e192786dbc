"""The integrity rules for submissions and published drafts, and how their rows are quarantined.

Registered with deployguard's engine when it autodiscovers `integrity` modules. Every
rule is a Q naming the rows that break it; lists of test names and words come from
settings at call time (DOCUMENTS_TEST_SUBMITTERS, DOCUMENTS_TEST_WORDS).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from deployguard.integrity import Quarantine, Rule, register, register_quarantine
from documents import services
from documents.models import (
    DRAFT_NAME_PREFIX,
    ML_NUMBER_PREFIX,
    DataSource,
    DraftStatus,
    PublishedDraft,
    Submission,
    SubmissionStatus,
)

DEFAULT_TEST_SUBMITTERS = ("Anonymous User", "test", "Test User")
DEFAULT_TEST_WORDS = ("test", "fake", "dummy", "sample", "example", "lorem")

SubmissionHistory = Submission.history.model
DraftHistory = PublishedDraft.history.model


def test_submitters() -> list[str]:
    return list(getattr(settings, "DOCUMENTS_TEST_SUBMITTERS", DEFAULT_TEST_SUBMITTERS))


def test_words() -> list[str]:
    return list(getattr(settings, "DOCUMENTS_TEST_WORDS", DEFAULT_TEST_WORDS))


def _test_content(prefix: str = "") -> Q:
    """Rows whose submitter is a test name, or whose submitter or title holds a test word."""
    condition = Q(pk__in=[])  # matches nothing: empty lists must not flag every row
    for name in test_submitters():
        condition |= Q(**{f"{prefix}submitted_by__iexact": name})
    words = test_words()
    if words:
        condition |= Q(**{f"{prefix}submitted_by__has_word": words})
        condition |= Q(**{f"{prefix}title__has_word": words})
    return condition


def _not_production() -> Q:
    return ~Q(data_source=DataSource.PRODUCTION) | Q(is_legitimate=False)


def _created_by_a_user(history: Any, **extra: Any) -> Exists:
    """The row's creation record exists, names a user and carries a reason."""
    return Exists(
        history.objects.filter(id=OuterRef("pk"), history_type="+", history_user__isnull=False, **extra)
        .exclude(history_change_reason__isnull=True)
        .exclude(history_change_reason="")
    )


def _changed_without_history(history: Any, fields: tuple[str, ...]) -> Exists:
    """The latest history record exists and differs from the row: a change that left no record."""
    latest = (
        history.objects.filter(id=OuterRef(OuterRef("pk"))).order_by("-history_id").values("history_id")[:1]
    )
    return Exists(
        history.objects.filter(history_id=Subquery(latest)).exclude(**{f: OuterRef(f) for f in fields})
    )


SUBMISSION_TRACKED = ("ml_number", "title", "submitted_by", "status", "data_source", "is_legitimate")
DRAFT_TRACKED = ("name", "submission_id", "status", "published_by_id", "data_source", "is_legitimate")

RULES = (
    Rule(
        id="documents.E001",
        severity="error",
        model=Submission,
        description=f"ML number is not {ML_NUMBER_PREFIX}<digits>",
        condition=lambda: ~Q(ml_number__numbered_as=ML_NUMBER_PREFIX),
    ),
    Rule(
        id="documents.E002",
        severity="error",
        model=PublishedDraft,
        description=f"draft name is not {DRAFT_NAME_PREFIX}<digits>",
        condition=lambda: ~Q(name__numbered_as=DRAFT_NAME_PREFIX),
    ),
    Rule(
        id="documents.E003",
        severity="error",
        model=Submission,
        description="status is not one of " + ", ".join(SubmissionStatus.values),
        condition=lambda: ~Q(status__in=SubmissionStatus.values),
    ),
    Rule(
        id="documents.E004",
        severity="error",
        model=PublishedDraft,
        description="status is not one of " + ", ".join(DraftStatus.values),
        condition=lambda: ~Q(status__in=DraftStatus.values),
    ),
    Rule(
        id="documents.E005",
        severity="error",
        model=Submission,
        description="not marked production data (data_source=production, is_legitimate=true)",
        condition=_not_production,
    ),
    Rule(
        id="documents.E006",
        severity="error",
        model=PublishedDraft,
        description="not marked production data (data_source=production, is_legitimate=true)",
        condition=_not_production,
    ),
    Rule(
        id="documents.E007",
        severity="error",
        model=Submission,
        description="test submitter or test word in submitted_by or title (DOCUMENTS_TEST_*)",
        condition=_test_content,
    ),
    Rule(
        id="documents.E008",
        severity="error",
        model=PublishedDraft,
        description="draft of a submission with a test submitter or test word (DOCUMENTS_TEST_*)",
        condition=lambda: Q(Exists(Submission.objects.filter(_test_content(), pk=OuterRef("submission_id")))),
    ),
    Rule(
        id="documents.E010",
        severity="error",
        model=PublishedDraft,
        description="draft's submission is missing or not published",
        condition=lambda: (
            ~Exists(
                Submission.objects.filter(pk=OuterRef("submission_id"), status=SubmissionStatus.PUBLISHED)
            )
        ),
    ),
    Rule(
        id="documents.E011",
        severity="error",
        model=Submission,
        description="published submission without a draft in production",
        condition=lambda: (
            Q(status=SubmissionStatus.PUBLISHED)
            & ~Exists(
                PublishedDraft.objects.filter(submission_id=OuterRef("pk")).exclude(
                    data_source=DataSource.QUARANTINE
                )
            )
        ),
    ),
    Rule(
        id="documents.E012",
        severity="error",
        model=PublishedDraft,
        description="draft's submission is not production data (quarantined, seed, test, ...)",
        condition=lambda: Q(
            Exists(Submission.objects.filter(_not_production(), pk=OuterRef("submission_id")))
        ),
    ),
    Rule(
        id="documents.E020",
        severity="error",
        model=Submission,
        description="no creation record naming a user and a reason (raw SQL, or code without a user)",
        condition=lambda: ~_created_by_a_user(SubmissionHistory),
    ),
    Rule(
        id="documents.E021",
        severity="error",
        model=PublishedDraft,
        description="no creation record naming its published_by and a reason (not published by the service)",
        condition=lambda: ~_created_by_a_user(DraftHistory, history_user_id=OuterRef("published_by_id")),
    ),
    Rule(
        id="documents.E022",
        severity="error",
        model=Submission,
        description="row differs from its latest history record (status or data changed without a record)",
        condition=lambda: Q(_changed_without_history(SubmissionHistory, SUBMISSION_TRACKED)),
    ),
    Rule(
        id="documents.E023",
        severity="error",
        model=PublishedDraft,
        description="row differs from its latest history record (changed without a record)",
        condition=lambda: Q(_changed_without_history(DraftHistory, DRAFT_TRACKED)),
    ),
    Rule(
        id="documents.W001",
        severity="warning",
        model=Submission,
        description="quarantined submissions (known non-production data; purge with scrub_fake_data)",
        condition=lambda: Q(data_source=DataSource.QUARANTINE),
        include_quarantined=True,
    ),
    Rule(
        id="documents.W002",
        severity="warning",
        model=PublishedDraft,
        description="quarantined drafts (known non-production data; purge with scrub_fake_data)",
        condition=lambda: Q(data_source=DataSource.QUARANTINE),
        include_quarantined=True,
    ),
)


def _drafts_of(submissions: QuerySet[Submission]) -> dict[Any, Q]:
    """A quarantined submission takes its draft along: a draft of non-production data is not production."""
    # A correlated EXISTS (one index probe per draft), not `submission__in`: PostgreSQL cannot
    # estimate how many submissions a rule set flags and, guessing many, runs an IN inside
    # an aggregate FILTER as an unhashed subplan: a full rescan per draft.
    return {PublishedDraft: Q(Exists(submissions.filter(pk=OuterRef("submission_id"))))}


register(*RULES)
register_quarantine(
    Quarantine(
        model=Submission,
        is_quarantined=lambda: Q(data_source=DataSource.QUARANTINE),
        quarantine=services.quarantine_rows,
        restore=services.restore_rows,
        purge=services.purge_quarantined,
        cascade=_drafts_of,
        display_field="ml_number",
    )
)
register_quarantine(
    Quarantine(
        model=PublishedDraft,
        is_quarantined=lambda: Q(data_source=DataSource.QUARANTINE),
        quarantine=services.quarantine_rows,
        restore=services.restore_rows,
        purge=services.purge_quarantined,
        display_field="name",
    )
)
