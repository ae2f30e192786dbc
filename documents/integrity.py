"""The integrity rules for submissions and published drafts, and how their rows are quarantined.

Registered with deployguard's engine when it autodiscovers `integrity` modules. Every
rule is a Q naming the rows that break it; lists of test names and words come from
settings at call time (DOCUMENTS_TEST_SUBMITTERS, DOCUMENTS_TEST_WORDS). Rules that read
another table say it twice: per row (`condition`: correlated subqueries, for filters and
single rows) and for a whole-table pass (`table_condition`: the same check through a
`Joined` per other table), from shared pieces where they can be, and tested row for row
against each other (tests/documents/test_integrity_table_pass.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Exists, Expression, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.lookups import Exact, IsNull

from deployguard.integrity import Joined, Quarantine, Rule, register, register_quarantine
from documents import services
from documents.matching import (  # noqa: F401  (the configured lists, read here too)
    DEFAULT_TEST_SUBMITTERS,
    DEFAULT_TEST_WORDS,
    missing_key_condition,
    test_content_condition,
    test_submitters,
    test_words,
)
from documents.models import (
    DRAFT_NAME_PREFIX,
    ML_NUMBER_PREFIX,
    DataSource,
    DraftStatus,
    PublishedDraft,
    Submission,
    SubmissionStatus,
)

SubmissionHistory = Submission.history.model
DraftHistory = PublishedDraft.history.model


Column = Callable[[str], Expression]


def _test_content(column: Column = F) -> Q:
    """Rows whose submitter is a test name, or whose submitter or title holds a test word,
    however disguised (documents.matching), or whose match keys are missing.

    `column` names a submission's field: the row's own (F), or a joined submission's.
    """
    return test_content_condition(
        names=test_submitters(), words=test_words(), column=column
    ) | missing_key_condition(column)


def _not_production(column: Column = F) -> Q:
    return ~Q(Exact(column("data_source"), DataSource.PRODUCTION)) | Q(Exact(column("is_legitimate"), False))


def _creation_records(history: Any) -> QuerySet[Any]:
    """Creation records that name a user and carry a reason."""
    return (
        history.objects.filter(history_type="+", history_user__isnull=False)
        .exclude(history_change_reason__isnull=True)
        .exclude(history_change_reason="")
    )


def _created_by_a_user(history: Any, **extra: Any) -> Exists:
    """The row's creation record exists, names a user and carries a reason."""
    return Exists(_creation_records(history).filter(id=OuterRef("pk"), **extra))


def _creations(history: Any, alias: str, *, by: str | None = None) -> Joined:
    """For a table pass: each row's creation records (by the user its field `by` names), one per row."""
    keys = ("id", "history_user_id") if by else ("id",)
    on = (("id", "pk"), ("history_user_id", by)) if by else (("id", "pk"),)
    # DISTINCT ON sorts (the id index already orders by id) so that the join can merge;
    # a plain DISTINCT hashed, and spilled to disk at 200,000 rows.
    return Joined(
        alias=alias,
        queryset=lambda: _creation_records(history).order_by(*keys).distinct(*keys).values(*keys),
        on=on,
    )


def _changed_without_history(history: Any, fields: tuple[str, ...]) -> Exists:
    """The latest history record exists and differs from the row: a change that left no record."""
    latest = (
        history.objects.filter(id=OuterRef(OuterRef("pk"))).order_by("-history_id").values("history_id")[:1]
    )
    return Exists(
        history.objects.filter(history_id=Subquery(latest)).exclude(**{f: OuterRef(f) for f in fields})
    )


def _latest_records(history: Any, alias: str, fields: tuple[str, ...]) -> Joined:
    """For a table pass: each row's latest history record (the highest history_id of its id)."""
    return Joined(
        alias=alias,
        queryset=lambda: history.objects.order_by("id", "-history_id").distinct("id").values("id", *fields),
        on=(("id", "pk"),),
    )


def _differs_from(latest: Joined, fields: tuple[str, ...]) -> Q:
    """`_changed_without_history` for a table pass: the latest record exists and differs.

    The SQL its `exclude()` writes: NOT (every field equal and, in the record, not NULL).
    """
    same = Q()
    for f in fields:
        same &= Q(Exact(latest.column(f), F(f))) & Q(IsNull(latest.column(f), False))
    return ~latest.missing() & ~same


SUBMISSION_TRACKED = (
    "ml_number",
    "title",
    "submitted_by",
    "status",
    "data_source",
    "is_legitimate",
    "submitted_by_key",
    "submitted_by_bare_key",
    "title_key",
)
DRAFT_TRACKED = ("name", "submission_id", "status", "published_by_id", "data_source", "is_legitimate")

# What the table passes join (aliases must not be table names).
SUBMISSION_CREATED = _creations(SubmissionHistory, "integrity_submission_created")
DRAFT_CREATED = _creations(DraftHistory, "integrity_draft_created", by="published_by_id")
SUBMISSION_LATEST = _latest_records(SubmissionHistory, "integrity_submission_latest", SUBMISSION_TRACKED)
DRAFT_LATEST = _latest_records(DraftHistory, "integrity_draft_latest", DRAFT_TRACKED)
PRODUCTION_DRAFT = Joined(
    alias="integrity_production_draft",
    queryset=lambda: (
        PublishedDraft.objects.exclude(data_source=DataSource.QUARANTINE)
        .order_by("submission_id")
        .distinct("submission_id")
        .values("submission_id")
    ),
    on=(("submission_id", "pk"),),
)
DRAFT_SUBMISSION = Joined(
    alias="integrity_draft_submission",
    queryset=lambda: Submission.objects.order_by().values(
        "id",
        "status",
        "data_source",
        "is_legitimate",
        "submitted_by",
        "title",
        "submitted_by_key",
        "submitted_by_bare_key",
        "title_key",
    ),
    on=(("id", "submission_id"),),
)

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
        description=(
            "test submitter or test word in submitted_by or title, however disguised, or no match key "
            "(DOCUMENTS_TEST_*)"
        ),
        condition=_test_content,
    ),
    Rule(
        id="documents.E008",
        severity="error",
        model=PublishedDraft,
        description="draft of a submission with a test submitter or test word (DOCUMENTS_TEST_*)",
        condition=lambda: Q(Exists(Submission.objects.filter(_test_content(), pk=OuterRef("submission_id")))),
        table_condition=lambda: _test_content(DRAFT_SUBMISSION.column),
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
        table_condition=lambda: (
            DRAFT_SUBMISSION.missing()
            | ~Q(Exact(DRAFT_SUBMISSION.column("status"), SubmissionStatus.PUBLISHED))
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
        table_condition=lambda: Q(status=SubmissionStatus.PUBLISHED) & PRODUCTION_DRAFT.missing(),
    ),
    Rule(
        id="documents.E012",
        severity="error",
        model=PublishedDraft,
        description="draft's submission is not production data (quarantined, seed, test, ...)",
        condition=lambda: Q(
            Exists(Submission.objects.filter(_not_production(), pk=OuterRef("submission_id")))
        ),
        table_condition=lambda: _not_production(DRAFT_SUBMISSION.column),
    ),
    Rule(
        id="documents.E020",
        severity="error",
        model=Submission,
        description="no creation record naming a user and a reason (raw SQL, or code without a user)",
        condition=lambda: ~_created_by_a_user(SubmissionHistory),
        table_condition=SUBMISSION_CREATED.missing,
    ),
    Rule(
        id="documents.E021",
        severity="error",
        model=PublishedDraft,
        description="no creation record naming its published_by and a reason (not published by the service)",
        condition=lambda: ~_created_by_a_user(DraftHistory, history_user_id=OuterRef("published_by_id")),
        table_condition=DRAFT_CREATED.missing,
    ),
    Rule(
        id="documents.E022",
        severity="error",
        model=Submission,
        description="row differs from its latest history record (status or data changed without a record)",
        condition=lambda: Q(_changed_without_history(SubmissionHistory, SUBMISSION_TRACKED)),
        table_condition=lambda: _differs_from(SUBMISSION_LATEST, SUBMISSION_TRACKED),
    ),
    Rule(
        id="documents.E023",
        severity="error",
        model=PublishedDraft,
        description="row differs from its latest history record (changed without a record)",
        condition=lambda: Q(_changed_without_history(DraftHistory, DRAFT_TRACKED)),
        table_condition=lambda: _differs_from(DRAFT_LATEST, DRAFT_TRACKED),
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
        repair=services.restore_recorded_values,
        repairable=("documents.E022",),
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
        repair=services.restore_recorded_values,
        repairable=("documents.E023",),
    )
)
