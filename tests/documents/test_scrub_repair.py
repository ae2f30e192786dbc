"""A row changed without a record is repaired (its recorded values restored), not quarantined whole."""

from __future__ import annotations

import getpass

import pytest

from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.fakes import raw_update_submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def flipped(db):
    published_draft(title="Interoperable widgets")  # legitimate neighbours
    SubmissionFactory(title="Widget registry")
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(submission.pk, status=Submission.Status.PUBLISHED)  # no draft: E011 too
    return submission


def test_the_dry_run_offers_to_restore_the_recorded_values(flipped):
    stdout, _stderr, status = run_command("scrub_fake_data")

    assert status == 0
    assert (
        "Could restore the recorded values of 1 submission (documents.E022: row differs from its latest "
        "history record (status or data changed without a record)) instead of quarantining them: "
        "add --repair documents.E022 to --apply."
    ) in stdout


def test_repair_restores_the_recorded_values_with_a_record_naming_run_operator_and_reason(flipped, superuser):
    stdout, stderr, status = run_command(
        "scrub_fake_data",
        "--apply",
        "--repair",
        "documents.E022",
        "--reason",
        "status flipped by SQL on 2 May",
        "--as",
        superuser.username,
    )

    assert status == 0, stderr
    assert "Restored the recorded values of 1 submission (documents.E022) in repair run " in stdout
    assert "Nothing to quarantine" in stdout  # the repaired row breaks no rule any more
    row = Submission.objects.get(pk=flipped.pk)
    assert (row.status, row.data_source, row.is_legitimate) == ("approved", DataSource.PRODUCTION, True)
    latest = row.history.first()
    run_id = stdout.split("in repair run ")[1].split(".")[0]
    assert latest.history_change_reason == (
        f"Recorded values restored by deployguard repair run {run_id} (documents.E022) "
        f"by {superuser.username}: status flipped by SQL on 2 May"
    )
    assert latest.status == "approved"
    assert run_command("verify_integrity")[2] == 0


def test_without_repair_the_quarantine_records_name_the_os_user_and_the_reason(flipped):
    _stdout, stderr, status = run_command("scrub_fake_data", "--apply", "--force", "--reason", "Weekly sweep")

    assert status == 0, stderr
    latest = Submission.objects.get(pk=flipped.pk).history.first()
    assert latest.data_source == DataSource.QUARANTINE
    assert f" by OS user {getpass.getuser()}: Weekly sweep: documents." in latest.history_change_reason
    assert not PublishedDraft.objects.filter(data_source=DataSource.QUARANTINE).exists()


def test_a_rule_that_is_not_about_changes_without_a_record_cannot_be_repaired(flipped):
    _stdout, stderr, status = run_command("scrub_fake_data", "--apply", "--repair", "documents.E007")

    assert status == 2
    assert (
        "documents.E007 cannot be repaired: only rules for rows changed without a record "
        "(documents.E022, documents.E023) can."
    ) in stderr
    assert Submission.objects.get(pk=flipped.pk).status == "published"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--repair", "documents.E022"), "--repair goes with --apply"),
        (("--apply", "--as", "nobody-here"), "--as 'nobody-here': no such user"),
    ],
)
def test_misuse_is_refused_before_anything_changes(flipped, args, message):
    _stdout, stderr, status = run_command("scrub_fake_data", *args)

    assert status == 2
    assert message in stderr
    assert Submission.objects.get(pk=flipped.pk).status == "published"
