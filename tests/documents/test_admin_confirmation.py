"""Confirming acts on exactly the rows the confirmation page listed, in the state it listed them."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext

from documents import services
from documents.admin import CHANGED_SINCE_SHOWN, MAX_LISTED_ROWS, NOTHING_CONFIRMED
from documents.models import PublishedDraft, Submission
from tests.documents.test_admin import (  # noqa: F401
    CHANGELIST,
    DRAFTS,
    action_post,
    editor_client,
    hidden_inputs,
    messages_of,
)
from tests.factories import SubmissionFactory, published_draft

pytestmark = pytest.mark.django_db

APPROVED = f"{CHANGELIST}?status__exact=approved"


def test_a_stale_select_all_publishes_only_the_rows_the_page_listed(editor_client):  # noqa: F811
    listed = SubmissionFactory(status="approved")
    shown = action_post(editor_client, APPROVED, "publish_selected", [listed], select_across="1", index="0")
    approved_later = SubmissionFactory(status="approved")  # another admin, meanwhile

    response = editor_client.post(APPROVED, {**hidden_inputs(shown), "reason": "Board"})

    assert [str(obj) for obj, _ in shown.context["rows"]] == [str(listed)]
    assert messages_of(response) == [("success", "Published 1 submission: rfc1.")]
    assert list(PublishedDraft.objects.values_list("submission_id", flat=True)) == [listed.pk]
    assert Submission.objects.get(pk=approved_later.pk).status == Submission.Status.APPROVED


@pytest.mark.parametrize("action", ["reject_selected", "approve_selected"])
def test_a_row_edited_after_the_page_listed_it_is_named_and_left_alone(editor_client, action):  # noqa: F811
    edited, untouched = SubmissionFactory(title="Widgets"), SubmissionFactory(title="Gadgets")
    shown = action_post(editor_client, CHANGELIST, action, [edited, untouched])
    edited = services.update_submission(
        actor=editor_client.user, submission=edited, title="Widgets, revised", submitted_by="Grace Hopper"
    )

    response = editor_client.post(CHANGELIST, {**hidden_inputs(shown), "reason": "Board"})

    verb = "rejected" if action == "reject_selected" else "approved"
    assert messages_of(response) == [
        ("error", CHANGED_SINCE_SHOWN.format(verb=verb, rows=str(edited))),
        ("success", f"{verb.capitalize()} 1 submission: {untouched}."),
    ]
    assert Submission.objects.get(pk=edited.pk).status == Submission.Status.SUBMITTED
    assert Submission.objects.get(pk=untouched.pk).status == verb


def test_a_row_approved_by_someone_else_after_listing_is_not_approved_again(editor_client):  # noqa: F811
    submission = SubmissionFactory()
    shown = action_post(editor_client, CHANGELIST, "approve_selected", [submission])
    services.approve_submission(actor=editor_client.user, submission=submission, reason="First")

    response = editor_client.post(CHANGELIST, {**hidden_inputs(shown), "reason": "Second"})

    assert messages_of(response)[0] == (
        "error",
        CHANGED_SINCE_SHOWN.format(verb="approved", rows=str(submission)),
    )
    assert submission.history.count() == 2


def test_a_draft_withdrawn_by_someone_else_after_listing_is_named(editor_client):  # noqa: F811
    draft = published_draft()
    shown = action_post(editor_client, DRAFTS, "withdraw_selected", [draft])
    services.withdraw_draft(actor=editor_client.user, draft=draft, reason="First")

    response = editor_client.post(DRAFTS, {**hidden_inputs(shown), "reason": "Second"})

    assert messages_of(response) == [
        ("error", CHANGED_SINCE_SHOWN.format(verb="withdrawn", rows=draft.name)),
    ]  # no green "Withdrew 0 drafts." beside the error
    assert draft.history.first().history_change_reason == "First"


def test_a_confirmation_that_carries_no_listed_rows_changes_nothing(editor_client):  # noqa: F811
    submission = SubmissionFactory(status="approved")

    response = action_post(
        editor_client, CHANGELIST, "publish_selected", [submission], post="yes", reason="X"
    )

    assert messages_of(response) == [("error", NOTHING_CONFIRMED.format(verb="published"))]
    assert not PublishedDraft.objects.exists()


@pytest.mark.parametrize("shown", ["garbage", "1:", ":abc", "99999999999999999999999:abc", "\x00:1"])
def test_a_forged_shown_entry_changes_nothing(editor_client, shown):  # noqa: F811
    submission = SubmissionFactory(status="approved")

    response = action_post(
        editor_client, CHANGELIST, "publish_selected", [submission], post="yes", reason="X", shown=shown
    )

    assert response.status_code == 302
    assert messages_of(response) == [("error", NOTHING_CONFIRMED.format(verb="published"))]
    assert not PublishedDraft.objects.exists()


def test_a_forged_state_for_a_row_is_refused_by_name(editor_client):  # noqa: F811
    submission = SubmissionFactory(status="approved")

    response = action_post(
        editor_client,
        CHANGELIST,
        "publish_selected",
        [submission],
        post="yes",
        reason="X",
        shown=f"{submission.pk}:0000",
    )

    assert messages_of(response)[0] == (
        "error",
        CHANGED_SINCE_SHOWN.format(verb="published", rows=str(submission)),
    )
    assert not PublishedDraft.objects.exists()


def test_a_confirmation_listing_more_rows_than_a_page_holds_is_refused(editor_client):  # noqa: F811
    submission = SubmissionFactory(status="approved")
    shown = [f"{pk}:abc" for pk in range(1, MAX_LISTED_ROWS + 2)]

    response = editor_client.post(
        CHANGELIST,
        {
            "action": "publish_selected",
            ACTION_CHECKBOX_NAME: [submission.pk],
            "post": "yes",
            "reason": "X",
            "shown": shown,
        },
    )

    assert messages_of(response) == [("error", NOTHING_CONFIRMED.format(verb="published"))]
    assert not PublishedDraft.objects.exists()


def _select_all(client) -> tuple[object, int]:
    with CaptureQueriesContext(connection) as captured:
        response = action_post(
            client, CHANGELIST, "reject_selected", Submission.objects.all()[:1], select_across="1", index="0"
        )
    return response, len(captured)


def test_a_select_all_confirmation_is_a_bounded_list_plus_counts(editor_client):  # noqa: F811
    for _ in range(3):
        SubmissionFactory()
    _, few_queries = _select_all(editor_client)
    for _ in range(MAX_LISTED_ROWS):
        SubmissionFactory()
    response, many_queries = _select_all(editor_client)

    assert many_queries <= few_queries + 1  # the count, once the list is full
    assert len(response.context["rows"]) == MAX_LISTED_ROWS
    assert response.context["selected_count"] == MAX_LISTED_ROWS + 3
    assert response.context["unlisted_count"] == 3
    assert len(response.context["shown"]) == MAX_LISTED_ROWS
    assert "… and 3 more, not acted on" in response.content.decode()
