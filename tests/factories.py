"""factory-boy factories. Documents rows are made through the services, like any real row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from deployguard.models import DeployRecord
from documents import services
from documents.exceptions import RuleRefused
from documents.models import PublishedDraft, Submission

DOCUMENTS_PERMISSIONS = (
    "add_submission",
    "change_submission",
    "view_submission",
    "approve_submission",
    "publish_submission",
    "view_publisheddraft",
    "withdraw_publisheddraft",
)


def grant(user: Any, codenames: tuple[str, ...]) -> None:
    if codenames:
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="documents", codename__in=codenames)
        )


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = factory.django.Password("correct horse battery staple")

    # `UserFactory(permissions=("publish_submission",))` grants documents permissions.
    permissions = factory.PostGeneration(
        lambda user, create, extracted, **kwargs: grant(user, extracted or ())
    )


class StaffFactory(UserFactory):
    is_staff = True


class EditorFactory(StaffFactory):
    """Staff with every documents permission: approve, publish and withdraw."""

    permissions = factory.PostGeneration(
        lambda user, create, extracted, **kwargs: grant(user, extracted or DOCUMENTS_PERMISSIONS)
    )


class SuperuserFactory(StaffFactory):
    is_superuser = True


class SubmissionFactory(factory.django.DjangoModelFactory):
    """Creates through the services; `status=` walks the submission there the real way."""

    class Meta:
        model = Submission

    ml_number = factory.Sequence(lambda n: f"ML-{n + 1:03d}")
    title = factory.Sequence(lambda n: f"Guidelines for interoperable widgets, part {n}")
    submitted_by = "Grace Hopper"
    actor = factory.SubFactory(SuperuserFactory)

    @classmethod
    def _create(cls, model_class: type[Submission], *args: Any, **kwargs: Any) -> Submission:
        # Rows the services refuse because they break a rule (test data, say) are what the
        # rules' tests need: such a row is made the same way with the rule check switched off,
        # as rows were made before the services refused them. legacy=True asks for that outright.
        if not kwargs.pop("legacy", False):
            try:
                with transaction.atomic():
                    return cls._walk(**kwargs)
            except RuleRefused:
                pass
        with mock.patch("documents.legitimacy.breaches", return_value={}):
            return cls._walk(**kwargs)

    @classmethod
    def _walk(cls, *, actor: Any, status: str = Submission.Status.SUBMITTED, **kwargs: Any) -> Submission:
        submission = services.create_submission(actor=actor, **kwargs)
        if status in (Submission.Status.APPROVED, Submission.Status.PUBLISHED):
            submission = services.approve_submission(actor=actor, submission=submission)
        if status == Submission.Status.REJECTED:
            submission = services.reject_submission(actor=actor, submission=submission, reason="Off topic")
        if status == Submission.Status.PUBLISHED:
            services.publish_submission(actor=actor, submission=submission, reason="Ready")
            submission.refresh_from_db()
        return submission


def published_draft(**kwargs: Any) -> PublishedDraft:
    """A draft published through the service, with its submission."""
    submission = SubmissionFactory(status=Submission.Status.PUBLISHED, **kwargs)
    return submission.draft


OPERATIONS_PERMISSIONS = ("view_operations", "switch_deploy_mode", "restore_scrubrun")


def grant_operations(user: Any, codenames: tuple[str, ...]) -> None:
    if codenames:
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="deployguard", codename__in=codenames)
        )


class OperatorFactory(StaffFactory):
    """Staff with every operations permission (deployguard): view, switch deploy mode, restore."""

    operations = factory.PostGeneration(
        lambda user, create, extracted, **kwargs: grant_operations(
            user, OPERATIONS_PERMISSIONS if extracted is None else extracted
        )
    )


class DeployRecordFactory(factory.django.DjangoModelFactory):
    """A finished deploy_safe run as the pipeline records it; `report=` replaces its report."""

    class Meta:
        model = DeployRecord

    deploy_id = factory.Sequence(lambda n: f"20260101T1000{n:02d}-abc{n:03d}")
    status = DeployRecord.Status.SUCCEEDED
    started_by = "ci@build-7"
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5))
    finished_at = factory.LazyAttribute(lambda record: record.started_at + timedelta(seconds=95))
    exit_status = 0
    backup_path = "var/backups/default-20260101T100000.sqlite3"
    report = factory.LazyAttribute(
        lambda record: {
            "deploy_id": record.deploy_id,
            "steps": [
                {"name": "pre-checks", "status": "ok", "seconds": 2.5, "detail": None},
                {"name": "migrate", "status": "ok", "seconds": 11.25, "detail": {"applied": 1}},
            ],
            "blocked_writes": [],
            "data_migration_changes": {},
        }
    )
