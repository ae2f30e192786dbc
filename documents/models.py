"""Submissions and published drafts, sealed so that only documents.services can change them."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

import deployguard.lookups  # noqa: F401  (registers the numbered_as lookup)
from deployguard.allowances import writes_allowed
from deployguard.origin import OriginHistoricalModel
from deployguard.seal import Seal
from documents.exceptions import DirectWriteRefused
from documents.matching import stored_keys

ML_NUMBER_PREFIX = "ML-"
DRAFT_NAME_PREFIX = "rfc"

WAY_OUT = "Use the admin's actions, or call the service with an acting user."
DIRECT_WRITE_REFUSED = (
    "{model} rows are written only by documents.services ({operation} refused): "
    "use the admin's actions, or call the service with an acting user."
)

SEAL = Seal("documents", writers={"documents.services"}, hint=WAY_OUT, refusal=DirectWriteRefused)
"""documents' tables and their history: every statement that writes them outside documents.services
is refused by deployguard's write guard (the tables are covered in DocumentsConfig.ready())."""

service_write = SEAL.writing
"""`with service_write(Model, ...):` lets the block write those models' rows and history. Only code of
documents.services may enter it; anywhere else it raises DirectWriteRefused."""


def refuse_unless_service(model: type[models.Model], operation: str) -> None:
    """The model layer's early refusal (before any SQL), with the operation named; the seal refuses
    the same writes at the SQL level whatever route they take. `allow_writes()` (the deploy
    pipeline's restore) lifts both."""
    if not SEAL.is_open(model) and not writes_allowed():
        raise DirectWriteRefused(DIRECT_WRITE_REFUSED.format(model=model.__name__, operation=operation))


class ServiceOnlyQuerySet(models.QuerySet):
    """Bulk writes, which skip save() and signals, are refused outside the services."""

    def update(self, **kwargs: Any) -> int:
        refuse_unless_service(self.model, "QuerySet.update()")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        refuse_unless_service(self.model, "QuerySet.delete()")
        return super().delete()

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        refuse_unless_service(self.model, "bulk_create()")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Any, *args: Any, **kwargs: Any) -> int:
        refuse_unless_service(self.model, "bulk_update()")
        return super().bulk_update(objs, *args, **kwargs)


class ServiceOnlyModel(models.Model):
    """Refuses save() and delete() outside the services before any SQL or transaction starts."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        refuse_unless_service(type(self), "save()")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        refuse_unless_service(type(self), "delete()")
        return super().delete(*args, **kwargs)


class DataSource(models.TextChoices):
    PRODUCTION = "production", "Production"
    SEED = "seed", "Seed (development demo data)"
    TEST = "test", "Test"
    IMPORT = "import", "Import"
    QUARANTINE = "quarantine", "Quarantine"


ml_number_validator = RegexValidator(
    rf"^{ML_NUMBER_PREFIX}[0-9]+\Z",
    f"Enter an ML number: {ML_NUMBER_PREFIX} followed by digits, such as ML-001.",
)
CONTROL_CHARACTER = (
    "Remove the control character {name} (at position {position}): text holds no control characters "
    "other than tabs and line breaks."
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def no_control_characters(value: str) -> None:
    """Refuse NUL and the other C0 controls (and DEL): PostgreSQL refuses NUL, and no reader sees any."""
    found = _CONTROL.search(value or "")
    if found:
        raise ValidationError(
            CONTROL_CHARACTER.format(name=f"U+{ord(found.group()):04X}", position=found.start() + 1),
            code="control_character",
        )


draft_name_validator = RegexValidator(
    rf"^{DRAFT_NAME_PREFIX}[0-9]+\Z",
    f"Draft names are {DRAFT_NAME_PREFIX} followed by digits, such as rfc9001.",
)


class SubmissionStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    PUBLISHED = "published", "Published"


class DraftStatus(models.TextChoices):
    PUBLISHED = "published", "Published"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Submission(ServiceOnlyModel):
    Status = SubmissionStatus
    # How operators name a submission (deployguard's commands accept and show it).
    natural_key_field: ClassVar[str] = "ml_number"

    ml_number = models.CharField("ML number", max_length=32, unique=True, validators=[ml_number_validator])
    title = models.CharField(max_length=300, validators=[no_control_characters])
    submitted_by = models.CharField(max_length=200, validators=[no_control_characters])
    status = models.CharField(
        max_length=16, choices=SubmissionStatus.choices, default=SubmissionStatus.SUBMITTED, db_index=True
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    data_source = models.CharField(
        max_length=16, choices=DataSource.choices, default=DataSource.PRODUCTION, db_index=True
    )
    is_legitimate = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # What the test-data rule matches (documents.matching.stored_keys), computed on every save;
    # empty only when a row was written around the model (the rule flags that too).
    submitted_by_key = models.TextField(editable=False, default="", db_default="")
    # The submitter's key without spaces and digits: a test name is this, compared by equality.
    submitted_by_bare_key = models.TextField(editable=False, default="", db_default="")
    title_key = models.TextField(editable=False, default="", db_default="")

    history = HistoricalRecords(
        bases=[OriginHistoricalModel], history_change_reason_field=models.TextField(null=True)
    )

    objects: ClassVar[ServiceOnlyQuerySet] = ServiceOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-pk"]
        # Related lookups and internal queries use the guarded manager too: a plain
        # _base_manager would be a way around the guard.
        base_manager_name = "objects"
        permissions = [
            ("approve_submission", "Can approve or reject submissions"),
            ("publish_submission", "Can publish approved submissions"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ml_number__numbered_as=ML_NUMBER_PREFIX), name="submission_ml_number_format"
            ),
            models.CheckConstraint(
                condition=Q(status__in=SubmissionStatus.values), name="submission_status_allowed"
            ),
            models.CheckConstraint(
                condition=Q(data_source__in=DataSource.values), name="submission_data_source_allowed"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["submitted", "rejected"]) | Q(approved_by__isnull=False),
                name="submission_approved_has_approver",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ml_number}: {self.title}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        keys = stored_keys(submitted_by=self.submitted_by, title=self.title)
        for name, key in keys.items():
            setattr(self, name, key)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"submitted_by", "title"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, *keys}
        super().save(*args, **kwargs)


class PublishedDraft(ServiceOnlyModel):
    Status = DraftStatus
    natural_key_field: ClassVar[str] = "name"

    name = models.CharField(max_length=32, unique=True, validators=[draft_name_validator])
    submission = models.OneToOneField(Submission, on_delete=models.PROTECT, related_name="draft")
    status = models.CharField(
        max_length=16, choices=DraftStatus.choices, default=DraftStatus.PUBLISHED, db_index=True
    )
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField()
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    data_source = models.CharField(
        max_length=16, choices=DataSource.choices, default=DataSource.PRODUCTION, db_index=True
    )
    is_legitimate = models.BooleanField(default=True, db_index=True)

    history = HistoricalRecords(
        bases=[OriginHistoricalModel], history_change_reason_field=models.TextField(null=True)
    )

    objects: ClassVar[ServiceOnlyQuerySet] = ServiceOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-pk"]
        base_manager_name = "objects"
        permissions = [("withdraw_publisheddraft", "Can withdraw published drafts")]
        constraints = [
            models.CheckConstraint(
                condition=Q(name__numbered_as=DRAFT_NAME_PREFIX), name="draft_name_format"
            ),
            models.CheckConstraint(condition=Q(status__in=DraftStatus.values), name="draft_status_allowed"),
            models.CheckConstraint(
                condition=Q(data_source__in=DataSource.values), name="draft_data_source_allowed"
            ),
            models.CheckConstraint(
                condition=(
                    Q(status="published", withdrawn_at__isnull=True, withdrawn_by__isnull=True)
                    | Q(status="withdrawn", withdrawn_at__isnull=False, withdrawn_by__isnull=False)
                ),
                name="draft_withdrawal_recorded",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DraftNumber(ServiceOnlyModel):
    """The last number handed out for a draft-name prefix; its row lock serialises publishing."""

    prefix = models.CharField(max_length=16, primary_key=True)
    last_number = models.PositiveBigIntegerField()

    objects: ClassVar[ServiceOnlyQuerySet] = ServiceOnlyQuerySet.as_manager()

    class Meta:
        base_manager_name = "objects"

    def __str__(self) -> str:
        return f"{self.prefix}{self.last_number}"


SERVICE_ONLY_MODELS: tuple[type[models.Model], ...] = (Submission, PublishedDraft, DraftNumber)


def seal_tables() -> None:
    """Seal the documents tables and their history tables (DocumentsConfig.ready())."""
    SEAL.cover(
        SERVICE_ONLY_MODELS,
        history={model: model.history.model for model in (Submission, PublishedDraft)},  # type: ignore[attr-defined]
    )
