"""Every route around documents.services is refused and leaves the database unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models.signals import post_save
from django.utils import timezone

from documents.exceptions import DirectWriteRefused, TransitionRefused
from documents.models import PublishedDraft, Submission
from tests.factories import SubmissionFactory
from tests.utils import behind_the_services

pytestmark = pytest.mark.django_db

DRAFT_SAVE_REFUSED = (
    "PublishedDraft rows are written only by documents.services (save() refused): "
    "use the admin's actions, or call the service with an acting user."
)


@pytest.fixture
def approved(db) -> Submission:
    return SubmissionFactory(status=Submission.Status.APPROVED)


def draft_for(submission: Submission) -> PublishedDraft:
    return PublishedDraft(
        name="rfc77", submission=submission, published_by=submission.approved_by, published_at=timezone.now()
    )


def assert_unpublished(submission: Submission) -> None:
    assert not PublishedDraft.objects.exists()
    assert PublishedDraft.history.count() == 0
    submission.refresh_from_db()
    assert submission.status == Submission.Status.APPROVED


def test_objects_create_of_a_draft_is_refused(approved):
    with pytest.raises(DirectWriteRefused) as refusal:
        PublishedDraft.objects.create(
            name="rfc77", submission=approved, published_by=approved.approved_by, published_at=timezone.now()
        )

    assert str(refusal.value) == DRAFT_SAVE_REFUSED
    assert_unpublished(approved)


def test_saving_a_new_draft_instance_is_refused(approved):
    with pytest.raises(DirectWriteRefused):
        draft_for(approved).save()

    assert_unpublished(approved)


def test_bulk_create_of_drafts_is_refused(approved):
    with pytest.raises(DirectWriteRefused) as refusal:
        PublishedDraft.objects.bulk_create([draft_for(approved)])

    assert "bulk_create() refused" in str(refusal.value)
    assert_unpublished(approved)


def test_queryset_update_of_submission_status_is_refused(approved):
    with pytest.raises(DirectWriteRefused) as refusal:
        Submission.objects.filter(pk=approved.pk).update(status="published")

    assert "QuerySet.update() refused" in str(refusal.value)
    assert_unpublished(approved)


def test_bulk_update_of_submission_status_is_refused(approved):
    approved.status = Submission.Status.PUBLISHED

    with pytest.raises(DirectWriteRefused):
        Submission.objects.bulk_update([approved], ["status"])

    assert_unpublished(approved)


def test_saving_a_changed_status_outside_the_services_is_refused(approved):
    approved.status = Submission.Status.PUBLISHED

    with pytest.raises(DirectWriteRefused):
        approved.save()

    assert_unpublished(approved)


def test_the_base_manager_is_guarded_too(approved):
    with pytest.raises(DirectWriteRefused):
        Submission._base_manager.filter(pk=approved.pk).update(status="published")
    with pytest.raises(DirectWriteRefused):
        PublishedDraft._base_manager.bulk_create([draft_for(approved)])

    assert_unpublished(approved)


def test_deleting_documents_rows_outside_the_services_is_refused():
    published = SubmissionFactory(status=Submission.Status.PUBLISHED)

    with pytest.raises(DirectWriteRefused):
        published.draft.delete()
    with pytest.raises(DirectWriteRefused):
        PublishedDraft.objects.all().delete()

    assert PublishedDraft.objects.count() == 1


def test_a_submission_is_born_submitted_even_with_every_guard_lifted(editor):
    with behind_the_services(), pytest.raises(TransitionRefused) as refusal:
        Submission.objects.create(ml_number="ML-500", title="T", submitted_by="S", status="approved")

    assert str(refusal.value) == (
        "A new submission starts as 'submitted' (got 'approved'): create it, then approve "
        "and publish it through the admin actions."
    )
    assert not Submission.objects.exists()


def test_a_signal_receiver_cannot_publish(approved):
    def publish_on_user_save(sender, instance, **kwargs):
        draft_for(approved).save()

    post_save.connect(publish_on_user_save, sender=get_user_model(), dispatch_uid="test.rogue")
    try:
        with pytest.raises(DirectWriteRefused):
            get_user_model().objects.create(username="trigger")
    finally:
        post_save.disconnect(dispatch_uid="test.rogue", sender=get_user_model())

    assert_unpublished(approved)


def test_a_loaddata_fixture_cannot_publish_or_flip_a_status(approved, tmp_path):
    fixture = tmp_path / "rogue.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "documents.submission",
                    "pk": approved.pk,
                    "fields": {
                        "ml_number": approved.ml_number,
                        "title": approved.title,
                        "submitted_by": approved.submitted_by,
                        "status": "published",
                        "approved_by": approved.approved_by_id,
                        "data_source": "production",
                        "is_legitimate": True,
                        "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z",
                    },
                },
                {
                    "model": "documents.publisheddraft",
                    "pk": 1,
                    "fields": {
                        "name": "rfc77",
                        "submission": approved.pk,
                        "status": "published",
                        "published_by": approved.approved_by_id,
                        "published_at": "2026-01-01T00:00:00Z",
                        "data_source": "production",
                        "is_legitimate": True,
                    },
                },
            ]
        )
    )

    with pytest.raises(TransitionRefused):
        call_command("loaddata", str(fixture), verbosity=0)

    assert_unpublished(approved)


def _migrated_sqlite_file(tmp_path: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def file_database_env(tmp_path) -> dict[str, str]:
    """A migrated SQLite file that another process can open (the test database is in memory)."""
    env = {**os.environ, "DJANGO_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    _migrated_sqlite_file(tmp_path, env)
    return env


def _count_rows(env: dict[str, str]) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from documents.models import PublishedDraft, Submission; "
            "print(Submission.objects.count(), PublishedDraft.objects.count())",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_a_shell_snippet_cannot_publish(file_database_env):
    snippet = (
        "from django.utils import timezone\n"
        "from django.contrib.auth.models import User\n"
        "from documents.models import PublishedDraft, Submission\n"
        "user = User.objects.create(username='script')\n"
        "PublishedDraft.objects.create(name='rfc1', submission_id=1, published_by=user,"
        " published_at=timezone.now())\n"
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", snippet],
        cwd=settings.BASE_DIR,
        env=file_database_env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert DRAFT_SAVE_REFUSED in result.stderr
    assert _count_rows(file_database_env) == "0 0"


def test_an_app_ready_hook_cannot_create_documents_rows(file_database_env):
    env = {**file_database_env, "DJANGO_SETTINGS_MODULE": "tests.rogue.settings"}

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1, result.stderr[-3000:]
    assert "Submission rows are written only by documents.services (save() refused)" in result.stderr
    assert _count_rows(file_database_env) == "0 0"
