"""An admin tells a fake row from a genuine one where they already look: badges, the panel, history."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.documents.fakes import raw_insert_submission, raw_update_submission
from tests.factories import SubmissionFactory

pytestmark = pytest.mark.e2e


def test_a_raw_sql_row_is_badged_explained_and_its_history_reads_as_text(
    editor_page: Page, admin_url, snapshot
):
    page = editor_page
    page.set_viewport_size({"width": 1280, "height": 800})
    genuine = SubmissionFactory(ml_number="ML-001", title="Interoperable widgets", actor=page.editor)
    raw_update_submission(genuine.pk, title="Interoperable widgets, edited by SQL")
    fake = raw_insert_submission("ML-002", submitted_by="Test User", title="Sample test document")

    page.goto(f"{admin_url}documents/submission/")
    fake_row = page.locator("#result_list tr", has_text="ML-002")
    expect(fake_row.locator("td.field-integrity")).to_contain_text("E007")
    expect(page.locator("#result_list tr", has_text="ML-001").locator("td.field-integrity")).to_contain_text(
        "E022"
    )
    # Every column fits at 1280 px: the table is no wider than its container.
    widths = page.evaluate(
        "() => [document.querySelector('#result_list').scrollWidth,"
        " document.querySelector('.results').clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    snapshot(page, "provenance-changelist")

    page.goto(f"{admin_url}documents/submission/{fake}/change/")
    panel = page.locator("section.provenance")
    expect(panel).to_contain_text("no history record (written outside the ORM, e.g. raw SQL)")
    expect(panel).to_contain_text("documents.E007")

    page.goto(f"{admin_url}documents/submission/{genuine.pk}/change/")
    expect(page.locator("table.provenance-differences")).to_contain_text(
        "Interoperable widgets, edited by SQL"
    )
    snapshot(page, "provenance-panel")

    page.click("section.provenance a:has-text('Full history')")
    page.click("#change-history a >> nth=0")
    expect(page.locator("table.history-record-values")).to_contain_text("Interoperable widgets")
    assert page.locator("#content-main select, #content-main input, #content-main textarea").count() == 0
    snapshot(page, "provenance-history-record")
