"""The admin as a browser drives it: POSTs to the changelist, confirmation pages, history URLs."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils.html import strip_tags

from documents import services
from documents.admin import REVERT_DISABLED
from documents.models import PublishedDraft, Submission
from tests.factories import EditorFactory, StaffFactory, SubmissionFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:documents_submission_changelist")
DRAFTS = reverse("admin:documents_publisheddraft_changelist")


def messages_of(response) -> list[tuple[str, str]]:
    """(level, text) of each message, its links reduced to their text."""
    return [(m.level_tag, strip_tags(m.message)) for m in get_messages(response.wsgi_request)]


def action_post(client, url: str, action: str, objects, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(o.pk) for o in objects], **extra}
    return client.post(url, data)


def hidden_inputs(response) -> dict[str, list[str]]:
    """The hidden fields of a confirmation page's form, as the browser sends them back."""
    form: dict[str, list[str]] = {}
    for name, value in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.content.decode()
    ):
        form.setdefault(name, []).append(value)
    form.pop("csrfmiddlewaretoken", None)
    return form


def confirm(client, url: str, action: str, objects, reason: str, **extra):
    """Select `objects`, run `action`, and confirm the page it shows with `reason`."""
    shown = action_post(client, url, action, objects, **extra)
    assert shown.status_code == 200, shown
    return client.post(url, {**hidden_inputs(shown), "reason": reason})


@pytest.fixture
def editor_client(client):
    editor = EditorFactory()
    client.force_login(editor)
    client.user = editor
    return client


def test_changelist_lists_submissions_with_their_draft_in_a_fixed_number_of_queries(
    editor_client, django_assert_max_num_queries
):
    for status in ("submitted", "approved", "published", "published"):
        SubmissionFactory(status=status)

    with django_assert_max_num_queries(12):
        response = editor_client.get(CHANGELIST)

    assert response.status_code == 200
    assert b"rfc1" in response.content and b"rfc2" in response.content


def test_changelist_filters_and_searches(editor_client):
    SubmissionFactory(title="Alpha widgets", status="approved")
    SubmissionFactory(title="Beta gadgets")

    by_status = editor_client.get(CHANGELIST, {"status__exact": "approved"})
    by_search = editor_client.get(CHANGELIST, {"q": "gadgets"})

    assert [s.title for s in by_status.context["cl"].result_list] == ["Alpha widgets"]
    assert [s.title for s in by_search.context["cl"].result_list] == ["Beta gadgets"]


def test_adding_a_submission_in_the_admin_goes_through_the_service(editor_client):
    response = editor_client.post(
        reverse("admin:documents_submission_add"),
        {"ml_number": "ML-042", "title": "Widget registry", "submitted_by": "Ada Lovelace"},
    )

    assert response.status_code == 302
    submission = Submission.objects.get(ml_number="ML-042")
    assert submission.status == Submission.Status.SUBMITTED
    record = submission.history.get()
    assert (record.history_user, record.history_change_reason) == (editor_client.user, "Created in the admin")
    assert record.history_origin == "request:POST /admin/documents/submission/add/"


def test_approve_selected_approves_each_and_reports_one_count(editor_client):
    fresh = SubmissionFactory()
    rejected = SubmissionFactory(status="rejected")

    shown = action_post(editor_client, CHANGELIST, "approve_selected", [fresh, rejected])
    response = editor_client.post(CHANGELIST, {**hidden_inputs(shown), "reason": "Board of 3 May"})

    assert [outcome for _, outcome in shown.context["rows"]] == [
        "will be approved",
        "cannot be approved: rejected",
    ]
    assert response.status_code == 302
    fresh.refresh_from_db()
    assert fresh.status == Submission.Status.APPROVED
    assert fresh.history.first().history_change_reason == "Board of 3 May"
    assert messages_of(response) == [("success", f"Approved 1 submission: {fresh}.")]


def test_publish_selected_first_shows_a_confirmation_with_the_names_they_will_get(editor_client):
    first = SubmissionFactory(status="approved")
    pending = SubmissionFactory()
    second = SubmissionFactory(status="approved")

    response = action_post(editor_client, CHANGELIST, "publish_selected", [first, pending, second])

    assert response.status_code == 200
    assert response.templates[0].name == "admin/documents/confirm_reasoned_action.html"
    outcomes = {str(obj): outcome for obj, outcome in response.context["rows"]}
    assert outcomes == {
        str(first): "will be published as rfc1",
        str(pending): "cannot be published: submitted",
        str(second): "will be published as rfc2",
    }
    assert not PublishedDraft.objects.exists()


def test_confirming_publish_creates_drafts_with_the_admin_and_reason_in_history(editor_client):
    first, second = SubmissionFactory(status="approved"), SubmissionFactory(status="approved")
    pending = SubmissionFactory()

    response = confirm(
        editor_client,
        CHANGELIST,
        "publish_selected",
        [first, pending, second],
        "Approved at the November board",
    )

    assert response.status_code == 302
    assert messages_of(response) == [("success", "Published 2 submissions: rfc1, rfc2.")]
    assert set(PublishedDraft.objects.values_list("name", flat=True)) == {"rfc1", "rfc2"}
    draft = PublishedDraft.objects.get(submission=first)
    creation = draft.history.get()
    assert creation.history_user == editor_client.user
    assert creation.history_change_reason == "Approved at the November board"
    assert creation.history_origin == "request:POST /admin/documents/submission/"


def test_publishing_all_rows_across_pages_publishes_every_filtered_row_after_confirmation(editor_client):
    approved = [SubmissionFactory(status="approved") for _ in range(3)]
    pending = SubmissionFactory()
    filtered = f"{CHANGELIST}?status__exact=approved"

    # The browser sends the ticked rows of the page it shows, plus "select all".
    shown = action_post(
        editor_client, filtered, "publish_selected", approved[:1], select_across="1", index="0"
    )
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', shown.content.decode())
    confirm: dict[str, list[str]] = {}
    for name, value in hidden:
        confirm.setdefault(name, []).append(value)
    response = editor_client.post(filtered, {**confirm, "reason": "Every approved one"})

    assert response.status_code == 302
    assert messages_of(response) == [("success", "Published 3 submissions: rfc1, rfc2, rfc3.")]
    assert set(PublishedDraft.objects.values_list("submission_id", flat=True)) == {s.pk for s in approved}
    assert Submission.objects.get(pk=pending.pk).status == Submission.Status.SUBMITTED


def test_confirming_publish_without_a_reason_publishes_nothing(editor_client):
    submission = SubmissionFactory(status="approved")

    response = action_post(
        editor_client, CHANGELIST, "publish_selected", [submission], post="yes", reason=" "
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "reason": ["Give a reason: it is recorded in the audit trail."]
    }
    assert not PublishedDraft.objects.exists()


def test_publish_action_is_absent_for_staff_without_the_publish_permission(client):
    approver = UserFactory(
        is_staff=True, permissions=("view_submission", "change_submission", "approve_submission")
    )
    client.force_login(approver)

    response = client.get(CHANGELIST)

    actions = [choice[0] for choice in response.context["action_form"].fields["action"].choices]
    assert "approve_selected" in actions
    assert "publish_selected" not in actions


def test_a_crafted_publish_post_from_staff_without_the_permission_publishes_nothing(client):
    approver = UserFactory(is_staff=True, permissions=("view_submission", "approve_submission"))
    client.force_login(approver)
    submission = SubmissionFactory(status="approved")

    response = action_post(client, CHANGELIST, "publish_selected", [submission], post="yes", reason="Sneaky")

    assert response.status_code == 302
    assert messages_of(response) == [("warning", "No action selected.")]
    assert not PublishedDraft.objects.exists()
    submission.refresh_from_db()
    assert submission.status == Submission.Status.APPROVED


def test_staff_without_documents_permissions_cannot_see_the_changelist(client):
    client.force_login(StaffFactory())

    assert client.get(CHANGELIST).status_code == 403


def test_drafts_have_no_add_form_and_no_change_or_delete(editor_client):
    draft = SubmissionFactory(status="published").draft

    assert editor_client.get(reverse("admin:documents_publisheddraft_add")).status_code == 403
    change = editor_client.post(
        reverse("admin:documents_publisheddraft_change", args=[draft.pk]), {"status": "withdrawn"}
    )
    delete = editor_client.post(
        reverse("admin:documents_publisheddraft_delete", args=[draft.pk]), {"post": "yes"}
    )

    assert (change.status_code, delete.status_code) == (403, 403)
    draft.refresh_from_db()
    assert draft.status == PublishedDraft.Status.PUBLISHED


def test_withdraw_selected_confirms_then_withdraws_with_the_reason(editor_client):
    draft = SubmissionFactory(status="published").draft

    confirmation = action_post(editor_client, DRAFTS, "withdraw_selected", [draft])
    response = editor_client.post(DRAFTS, {**hidden_inputs(confirmation), "reason": "Superseded"})

    assert confirmation.status_code == 200
    assert [outcome for _, outcome in confirmation.context["rows"]] == ["will be withdrawn"]
    assert messages_of(response) == [("success", f"Withdrew 1 draft: {draft.name}.")]
    draft.refresh_from_db()
    assert draft.status == PublishedDraft.Status.WITHDRAWN
    assert draft.history.first().history_change_reason == "Superseded"


def test_a_crafted_history_revert_post_cannot_unpublish(editor_client):
    submission = SubmissionFactory(status="published")
    approved_version = submission.history.filter(status="approved").get()
    url = reverse("admin:documents_submission_simple_history", args=[submission.pk, approved_version.pk])

    response = editor_client.post(
        url,
        {"ml_number": submission.ml_number, "title": "Reverted", "submitted_by": "X", "status": "approved"},
    )

    assert response.status_code == 302
    assert messages_of(response) == [("error", REVERT_DISABLED)]
    submission.refresh_from_db()
    assert (submission.status, submission.title) == (Submission.Status.PUBLISHED, submission.title)
    assert PublishedDraft.objects.filter(submission=submission).exists()
    assert submission.history.count() == 3


def test_a_crafted_history_revert_post_cannot_resurrect_a_withdrawn_draft(editor_client):
    draft = SubmissionFactory(status="published").draft
    confirm(editor_client, DRAFTS, "withdraw_selected", [draft], "Retired")
    published_version = draft.history.last()
    url = reverse("admin:documents_publisheddraft_simple_history", args=[draft.pk, published_version.pk])

    response = editor_client.post(url, {"status": "published"})

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == PublishedDraft.Status.WITHDRAWN


def test_history_page_shows_who_published_and_why(editor_client):
    submission = SubmissionFactory(status="published")

    response = editor_client.get(reverse("admin:documents_submission_history", args=[submission.pk]))

    assert response.status_code == 200
    assert b"Ready" in response.content


def test_the_integrity_filter_lists_rows_that_break_rules_and_never_the_legitimate_one(editor_client):
    from tests.documents.fakes import raw_insert_submission

    legitimate = SubmissionFactory(status="published")
    fake = raw_insert_submission("ML-900", submitted_by="Test User")

    response = editor_client.get(CHANGELIST, {"integrity": "errors"})

    assert [s.pk for s in response.context["cl"].result_list] == [fake]
    assert legitimate.pk not in [s.pk for s in response.context["cl"].result_list]
    choices = [
        choice["display"]
        for choice in response.context["cl"].filter_specs[-1].choices(response.context["cl"])
    ]
    assert "Breaks an error-level rule" in choices


def test_publishing_through_the_admin_after_sql_took_the_next_names_shows_and_uses_free_ones(editor_client):
    from tests.documents.fakes import raw_insert_draft, raw_insert_submission

    SubmissionFactory(status="published")  # rfc1: the counter exists
    for number in (2, 3):
        stray = raw_insert_submission(f"ML-90{number}")
        raw_insert_draft(f"rfc{number}", submission_id=stray, published_by_id=editor_client.user.pk)
    first, second = SubmissionFactory(status="approved"), SubmissionFactory(status="approved")

    shown = action_post(editor_client, CHANGELIST, "publish_selected", [first, second])
    response = editor_client.post(CHANGELIST, {**hidden_inputs(shown), "reason": "Board"})

    assert [outcome for _, outcome in shown.context["rows"]] == [
        "will be published as rfc4",
        "will be published as rfc5",
    ]
    assert response.status_code == 302
    assert messages_of(response) == [("success", "Published 2 submissions: rfc4, rfc5.")]
    assert {d.submission_id: d.name for d in PublishedDraft.objects.filter(name__in=["rfc4", "rfc5"])} == {
        first.pk: "rfc4",
        second.pk: "rfc5",
    }


def test_each_confirmed_action_is_in_recent_actions_and_the_message_links_what_it_made(editor_client):
    submission = SubmissionFactory(status="approved")

    response = confirm(editor_client, CHANGELIST, "publish_selected", [submission], "November board")

    draft = PublishedDraft.objects.get(submission=submission)
    [message] = [m.message for m in get_messages(response.wsgi_request)]
    link = f'<a href="/admin/documents/publisheddraft/{draft.pk}/change/">rfc1</a>'
    assert message == f"Published 1 submission: {link}."
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag) == (editor_client.user, CHANGE)
    assert entry.object_id == str(submission.pk)
    assert entry.get_change_message() == "Published: November board"
    index = editor_client.get("/admin/").content.decode()
    assert str(submission) in index.split('id="recent-actions-module"', 1)[1]


def test_when_nothing_was_done_no_success_message_is_shown(editor_client):
    draft = SubmissionFactory(status="published").draft
    shown = action_post(editor_client, DRAFTS, "withdraw_selected", [draft])
    services.withdraw_draft(actor=editor_client.user, draft=draft, reason="Meanwhile")

    response = editor_client.post(DRAFTS, {**hidden_inputs(shown), "reason": "Again"})

    assert [level for level, _ in messages_of(response)] == ["error"]


def test_a_withdrawn_drafts_submission_says_so_in_the_changelist(editor_client):
    draft = SubmissionFactory(status="published").draft
    services.withdraw_draft(actor=editor_client.user, draft=draft, reason="Superseded")

    body = editor_client.get(CHANGELIST).content.decode()

    assert f'<td class="field-draft_name">{draft.name} (withdrawn)</td>' in body
