"""An admin publishes a submission as a person would, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from documents.models import PublishedDraft, Submission
from tests.e2e.conftest import log_in
from tests.factories import SubmissionFactory, UserFactory

pytestmark = pytest.mark.e2e


def run_action(page: Page, action: str) -> None:
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def test_an_editor_creates_approves_and_publishes_a_submission(editor_page: Page, admin_url, snapshot):
    page = editor_page
    page.goto(f"{admin_url}documents/submission/add/")
    page.fill("#id_ml_number", "ML-001")
    page.fill("#id_title", "Interoperable widgets")
    page.fill("#id_submitted_by", "Ada Lovelace")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    page.check("input.action-select")
    run_action(page, "approve_selected")
    expect(page.locator("#confirm-rows")).to_contain_text("will be approved")
    page.click("input[value='Yes, approve']")  # the reason is filled in: "Approved"
    expect(page.locator(".messagelist")).to_contain_text(
        "Approved 1 submission: ML-001: Interoperable widgets."
    )

    page.check("input.action-select")
    run_action(page, "publish_selected")
    expect(page.locator("h1")).to_have_text("Publish submissions")
    expect(page.locator("#confirm-rows")).to_contain_text("ML-001: Interoperable widgets")
    expect(page.locator("#confirm-rows")).to_contain_text("will be published as rfc1")
    snapshot(page, "publish-confirmation")

    # An empty reason is refused: the browser stops it, and so does the server.
    page.click("input[value='Yes, publish']")
    expect(page.locator("h1")).to_have_text("Publish submissions")
    page.locator("textarea[name=reason]").evaluate("el => el.removeAttribute('required')")
    page.fill("textarea[name=reason]", "   ")
    page.click("input[value='Yes, publish']")
    expect(page.locator(".errorlist")).to_have_text("Give a reason: it is recorded in the audit trail.")
    assert not PublishedDraft.objects.exists()

    page.fill("textarea[name=reason]", "Approved by the November board")
    page.click("input[value='Yes, publish']")
    expect(page.locator(".messagelist")).to_contain_text("Published 1 submission: rfc1.")
    expect(page.locator("#result_list")).to_contain_text("rfc1")

    draft = PublishedDraft.objects.get(name="rfc1")
    creation = draft.history.get()
    assert creation.history_user == page.editor
    assert creation.history_change_reason == "Approved by the November board"
    assert Submission.objects.get(ml_number="ML-001").status == Submission.Status.PUBLISHED


def test_staff_without_the_publish_permission_does_not_see_the_action(
    page: Page, admin_url, transactional_db
):
    UserFactory(username="reviewer", is_staff=True, permissions=("view_submission", "approve_submission"))
    SubmissionFactory(status="approved")
    log_in(page, admin_url, "reviewer")

    page.goto(f"{admin_url}documents/submission/")

    options = page.locator("select[name=action] option").all_inner_texts()
    assert "Approve selected submissions" in options
    assert "Publish selected submissions" not in options


def test_history_shows_who_published_and_why_and_cannot_be_reverted(editor_page: Page, admin_url, snapshot):
    page = editor_page
    submission = SubmissionFactory(status="published", actor=page.editor)

    page.goto(f"{admin_url}documents/submission/{submission.pk}/history/")
    history = page.locator("#change-history")
    expect(history).to_contain_text("Ready")
    expect(history).to_contain_text(page.editor.username)
    snapshot(page, "submission-history")

    approved = submission.history.get(status="approved")
    page.goto(f"{admin_url}documents/submission/{submission.pk}/history/{approved.pk}/")
    # The record is shown as text, with no form and no Revert button to press.
    expect(page.locator("h1")).to_contain_text("as recorded on")
    expect(page.locator("input[type=submit][value='Revert']")).to_have_count(0)
    expect(page.locator("#content form")).to_have_count(0)
    # A crafted POST to the record's page, with the session's CSRF token, is refused all the same.
    page.evaluate(
        """() => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = location.href;
            form.append(document.querySelector("input[name=csrfmiddlewaretoken]").cloneNode());
            document.body.append(form);
            form.submit();
        }"""
    )
    expect(page.locator(".messagelist")).to_contain_text("Reverting from history is disabled")
    submission.refresh_from_db()
    assert submission.status == Submission.Status.PUBLISHED
    assert PublishedDraft.objects.filter(submission=submission).exists()
