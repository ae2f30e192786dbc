"""verify_integrity and explain_row say which fields a change without a record changed, old and new."""

from __future__ import annotations

import json

import pytest

from deployguard.history_diff import Difference, differences
from documents.models import Submission
from tests.documents.fakes import raw_update_submission
from tests.factories import SubmissionFactory
from tests.utils import run_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def flipped(db):
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    SubmissionFactory()  # untouched
    raw_update_submission(submission.pk, status=Submission.Status.PUBLISHED, title="Quietly retitled")
    return submission


def test_differences_name_each_changed_field_with_the_recorded_and_current_value(flipped):
    assert differences(Submission, [flipped.pk, flipped.pk + 1]) == {
        flipped.pk: [
            Difference("title", flipped.title, "Quietly retitled"),
            Difference("status", "approved", "published"),
        ]
    }


def test_verify_integrity_shows_the_fields_a_change_without_a_record_changed(flipped):
    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")

    assert status == 1
    (rule,) = [rule for rule in json.loads(stdout)["rules"] if rule["id"] == "documents.E022"]
    assert rule["samples"][0]["differs"] == [
        {"field": "title", "recorded": flipped.title, "now": "Quietly retitled"},
        {"field": "status", "recorded": "approved", "now": "published"},
    ]
    table = run_command("verify_integrity")[0]
    assert "    changed without a record: status: 'approved' recorded, 'published' now" in table


def test_explain_row_shows_the_fields_a_change_without_a_record_changed(flipped):
    stdout, _stderr, status = run_command("explain_row", "documents.submission", str(flipped.pk))

    assert status == 0
    assert "Changed without a record (latest history record -> row now):" in stdout
    assert f"  title: {flipped.title!r} recorded, 'Quietly retitled' now" in stdout
    assert "  status: 'approved' recorded, 'published' now" in stdout


def test_explain_row_of_an_untouched_row_shows_no_difference(db):
    submission = SubmissionFactory()

    stdout, _stderr, _status = run_command("explain_row", "documents.submission", str(submission.pk))

    assert "Changed without a record" not in stdout
