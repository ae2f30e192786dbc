"""Provenance in the admin: the integrity badge on changelists, the panel on change pages, and
history records that only read, in human terms."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from documents.models import Submission
from tests.documents.fakes import raw_insert_submission, raw_update_submission
from tests.factories import SubmissionFactory, published_draft

pytestmark = pytest.mark.django_db

SUBMISSIONS = "/admin/documents/submission/"
DRAFTS = "/admin/documents/publisheddraft/"


def cell(body: str, key: str, column: str) -> str:
    """The changelist cell of `column` in the row that shows `key`."""
    row = body.split(key, 1)[1].split("</tr>", 1)[0]
    return row.split(f'class="field-{column}"', 1)[1].split("</td>", 1)[0]


def test_the_changelist_badges_raw_sql_rows_with_the_rules_they_break_and_genuine_rows_ok(
    admin_client, superuser
):
    SubmissionFactory(ml_number="ML-001", actor=superuser)
    raw_insert_submission("ML-002", submitted_by="Test User")

    body = admin_client.get(SUBMISSIONS).content.decode()

    assert '<span class="ops-badge ok" title="Breaks no integrity rule">ok</span>' in cell(
        body, "ML-001", "integrity"
    )
    fake = cell(body, "ML-002", "integrity")
    assert '<span class="ops-badge error" title="documents.E007: test submitter' in fake
    assert ">E007</span>" in fake
    assert "ops-badge ok" not in fake


def test_a_quarantined_row_is_badged_quarantined(admin_client, superuser):
    submission = SubmissionFactory(ml_number="ML-001", actor=superuser)
    raw_update_submission(submission.pk, data_source="quarantine", is_legitimate=False)

    body = admin_client.get(SUBMISSIONS).content.decode()

    assert ">quarantined</span>" in cell(body, "ML-001", "integrity")


def test_the_draft_changelist_has_the_badge_too(admin_client, superuser):
    draft = published_draft(actor=superuser)

    body = admin_client.get(DRAFTS).content.decode()

    assert ">ok</span>" in cell(body, draft.name, "integrity")


def test_the_badge_costs_the_same_queries_for_5_rows_as_for_40(admin_client, superuser):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(SUBMISSIONS).status_code == 200
        return len(queries)

    for n in range(5):
        raw_insert_submission(f"ML-{n + 100}", submitted_by="Test User")
    few = count_queries()
    for n in range(35):
        raw_insert_submission(f"ML-{n + 200}")

    assert count_queries() == few


def test_the_change_page_says_a_raw_sql_row_has_no_history_and_names_its_rules(admin_client):
    pk = raw_insert_submission("ML-002", submitted_by="Test User")

    body = admin_client.get(f"{SUBMISSIONS}{pk}/change/").content.decode()
    panel = body.split('<section class="provenance module"', 1)[1].split("</section>", 1)[0]

    assert "no history record (written outside the ORM, e.g. raw SQL)" in panel
    assert '<span class="ops-badge error">documents.E007</span> test submitter' in panel
    assert "Full history (0 records)" in panel


def test_the_change_page_shows_who_created_a_row_and_which_fields_changed_without_a_record(
    admin_client, superuser
):
    submission = SubmissionFactory(ml_number="ML-001", title="Widgets", actor=superuser)
    raw_update_submission(submission.pk, title="Widgets, edited behind the admin's back")

    body = admin_client.get(f"{SUBMISSIONS}{submission.pk}/change/").content.decode()
    panel = body.split('<section class="provenance module"', 1)[1].split("</section>", 1)[0]

    assert f"created by {superuser.get_username()}" in panel
    assert "documents.E022" in panel
    assert (
        '<th scope="row">title</th><td>Widgets</td><td>Widgets, edited behind the admin&#x27;s back</td>'
        in panel
    )
    assert f'<a href="{SUBMISSIONS}{submission.pk}/history/">Full history (1 record)</a>' in panel


def test_a_history_record_page_reads_as_text_with_no_form_widgets(admin_client, superuser):
    submission = SubmissionFactory(ml_number="ML-001", actor=superuser, status=Submission.Status.APPROVED)
    first, second = submission.history.order_by("history_id")

    body = admin_client.get(f"{SUBMISSIONS}{submission.pk}/history/{second.history_id}/").content.decode()
    content = body.split('<div id="content-main">', 1)[1]

    assert "<select" not in content and "<input" not in content and "<textarea" not in content
    assert (
        '<tr class="changed"><th scope="row">Status</th><td>Approved</td><td>Submitted</td></tr>' in content
    )
    assert f"<dt>By</dt><dd>{superuser.get_username()}</dd>" in content
    # An empty foreign key reads as a dash, never "Deleted user (pk=None)".
    first_body = admin_client.get(
        f"{SUBMISSIONS}{submission.pk}/history/{first.history_id}/"
    ).content.decode()
    assert '<th scope="row">Approved by</th><td>—</td>' in first_body
    assert "pk=None" not in first_body


def test_the_history_list_shows_changes_in_human_terms(admin_client, superuser):
    submission = SubmissionFactory(ml_number="ML-001", actor=superuser, status=Submission.Status.APPROVED)

    body = admin_client.get(f"{SUBMISSIONS}{submission.pk}/history/").content.decode()

    assert "pk=None" not in body
    assert "Submitted" in body and "Approved" in body


def test_posting_to_a_history_record_changes_nothing(admin_client, superuser):
    submission = SubmissionFactory(ml_number="ML-001", title="Widgets", actor=superuser)
    record = submission.history.get()

    admin_client.post(f"{SUBMISSIONS}{submission.pk}/history/{record.history_id}/", {"title": "Hijacked"})

    submission.refresh_from_db()
    assert submission.title == "Widgets"
    assert submission.history.count() == 1


def test_search_finds_a_submission_by_its_draft_name(admin_client, superuser):
    draft = published_draft(actor=superuser)
    SubmissionFactory(ml_number="ML-777", actor=superuser)

    body = admin_client.get(SUBMISSIONS, {"q": draft.name}).content.decode()

    assert draft.submission.ml_number in body
    assert "ML-777" not in body
