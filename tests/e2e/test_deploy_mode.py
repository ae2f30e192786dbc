"""Deploy mode as an admin sees it: the banner and a paused form, the 503 page on save, saving again after."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from deployguard import state
from documents.models import Submission
from tests.factories import SubmissionFactory

pytestmark = pytest.mark.e2e


@pytest.fixture
def deploy_mode(settings):
    """Returns a switch; deploy mode is off again after the test."""
    # The live server runs in this process: a zero cache lifetime makes each switch immediate.
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    state.clear_cache()

    def turn_on() -> None:
        state.enable(reason="Release 2026.11", changed_by="ci@build-7", expected_minutes=10)

    yield turn_on
    state.disable(changed_by="ci@build-7")
    state.clear_cache()


def test_deploy_mode_shows_a_banner_refuses_a_save_with_503_and_saving_works_after(
    editor_page: Page, admin_url, deploy_mode, snapshot
):
    page = editor_page
    submission = SubmissionFactory(title="Original title", actor=page.editor)
    # The form was open before the deploy started; what is typed there cannot be saved during it.
    page.goto(f"{admin_url}documents/submission/{submission.pk}/change/")
    page.fill("#id_title", "Changed during the deploy")
    deploy_mode()

    fresh = page.context.new_page()
    fresh.goto(f"{admin_url}documents/submission/{submission.pk}/change/")
    banner = fresh.locator("#deploy-mode-banner")
    expect(banner).to_contain_text("Deploy mode is on: changes are paused.")
    expect(banner).to_contain_text("ci@build-7")
    expect(banner).to_contain_text("Release 2026.11")
    expect(fresh.locator("input[name=_save]")).to_be_disabled()
    snapshot(fresh, "deploy-mode-banner")
    fresh.close()

    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("input[name=_save]")
    assert answer.value.status == 503
    assert answer.value.headers["retry-after"].isdigit()
    expect(page.locator("body")).to_contain_text("Release 2026.11")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    snapshot(page, "deploy-mode-503")
    submission.refresh_from_db()
    assert submission.title == "Original title"
    assert submission.history.count() == 1

    state.disable(changed_by="ci@build-7")
    page.goto(f"{admin_url}documents/submission/{submission.pk}/change/")
    expect(page.locator("#deploy-mode-banner")).to_have_count(0)
    page.fill("#id_title", "Changed after the deploy")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    submission.refresh_from_db()
    assert submission.title == "Changed after the deploy"
    assert Submission.objects.count() == 1


def test_an_admin_sees_rows_that_break_the_integrity_rules(editor_page: Page, admin_url):
    from tests.documents.fakes import raw_insert_submission

    SubmissionFactory(status="published", actor=editor_page.editor, title="Legitimate widgets")
    raw_insert_submission("ML-901", submitted_by="Test User", title="Fake widgets")

    editor_page.goto(f"{admin_url}documents/submission/")
    editor_page.click("text=Breaks an error-level rule")

    rows = editor_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ML-901")
