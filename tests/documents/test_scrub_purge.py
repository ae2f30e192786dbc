from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deployguard.models_integrity import ScrubRow, ScrubRun
from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.fakes import raw_update_submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import behind_the_services, run_command


@pytest.fixture
def quarantined(db, settings):
    """Four legitimate documents, one fake published one, quarantined 40 days ago."""
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 0.5
    legitimate = [published_draft() for _ in range(4)]
    fake = published_draft(submitted_by="Test User")
    assert run_command("scrub_fake_data", "--apply")[2] == 0
    ScrubRun.objects.update(created_at=timezone.now() - timedelta(days=40))
    return legitimate, fake


def test_purge_is_a_dry_run_without_apply(quarantined):
    _legitimate, fake = quarantined
    stdout, stderr, status = run_command("scrub_fake_data", "--purge", "--older-than", "30")
    assert status == 0, stderr
    assert f"Would delete 1 published draft: {fake.name}" in stdout
    assert f"Would delete 1 submission: {fake.submission.ml_number}" in stdout
    assert stdout.index("published draft") < stdout.index("submission:")
    assert Submission.objects.filter(pk=fake.submission_id).exists()


def test_purge_apply_deletes_only_old_quarantined_rows(quarantined):
    legitimate, fake = quarantined
    stdout, stderr, status = run_command("scrub_fake_data", "--purge", "--older-than", "30", "--apply")
    assert status == 0, stderr
    assert "Deleted 1 published draft and 1 submission." in stdout
    assert not PublishedDraft.objects.filter(pk=fake.pk).exists()
    assert not Submission.objects.filter(pk=fake.submission_id).exists()
    assert Submission.objects.count() == len(legitimate)
    deletion = Submission.history.filter(id=fake.submission_id).latest()
    assert deletion.history_type == "-"
    assert "Purged by deployguard" in deletion.history_change_reason
    assert not ScrubRow.objects.filter(purged_at__isnull=True).exists()


def test_purge_leaves_recent_quarantine_alone(quarantined):
    stdout, _stderr, status = run_command("scrub_fake_data", "--purge", "--older-than", "60", "--apply")
    assert status == 0
    assert "Nothing to purge" in stdout
    assert Submission.objects.filter(data_source=DataSource.QUARANTINE).count() == 1


def test_purge_refuses_to_take_unquarantined_rows_along(quarantined):
    _legitimate, fake = quarantined
    from django.db import connection

    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_publisheddraft SET data_source = 'production' WHERE id = %s", [fake.pk]
        )
    _stdout, stderr, status = run_command("scrub_fake_data", "--purge", "--older-than", "30", "--apply")
    assert status == 1
    assert f"Refusing to purge: {fake.name}" in stderr
    assert Submission.objects.filter(pk=fake.submission_id).exists()


@pytest.mark.parametrize(
    "args",
    [("--purge",), ("--older-than", "3"), ("--purge", "--older-than", "-1"), ("--purge", "--restore", "x")],
)
def test_purge_misuse_exits_two(db, args):
    _stdout, stderr, status = run_command("scrub_fake_data", *args)
    assert status == 2
    assert len(stderr.strip().splitlines()) == 1


def test_scrub_never_touches_a_clean_database(db):
    published_draft()
    SubmissionFactory()
    stdout, _stderr, status = run_command("scrub_fake_data", "--apply")
    assert status == 0
    assert "Nothing to quarantine" in stdout
    assert not ScrubRun.objects.exists()


def test_seed_data_is_quarantined_and_restored_to_seed(db, settings):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 1
    SubmissionFactory()
    seed = SubmissionFactory()
    raw_update_submission(seed.pk, data_source=DataSource.SEED)
    # The raw update left no history record, so E022 flags it as well as E005.
    run_command("scrub_fake_data", "--apply")
    seed.refresh_from_db()
    assert (seed.data_source, seed.is_legitimate) == (DataSource.QUARANTINE, False)
    run_command("scrub_fake_data", "--restore", ScrubRun.objects.get().id)
    seed.refresh_from_db()
    assert (seed.data_source, seed.is_legitimate) == (DataSource.SEED, True)


def test_a_draft_follows_its_flagged_submission_into_quarantine_and_back(db, settings):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 1
    published_draft()
    draft = published_draft()
    # Only the submission breaks a rule: its title was rewritten without a history record.
    raw_update_submission(draft.submission_id, title="Rewritten outside the audit trail")
    stdout, _stderr, _status = run_command("scrub_fake_data")
    assert "Would quarantine 1 submission: " in stdout
    assert f"Would quarantine 1 published draft: {draft.name}" in stdout

    run_command("scrub_fake_data", "--apply")

    rows = {(row.model_label, row.object_pk): row.rule_ids for row in ScrubRow.objects.all()}
    assert rows == {
        ("documents.submission", str(draft.submission_id)): ["documents.E022"],
        ("documents.publisheddraft", str(draft.pk)): ["cascade:documents.submission"],
    }
    assert run_command("verify_integrity")[2] == 0
    run_command("scrub_fake_data", "--restore", ScrubRun.objects.get().id)
    draft.refresh_from_db()
    assert draft.data_source == DataSource.PRODUCTION
