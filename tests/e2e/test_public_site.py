"""A reader browses the public site in a real browser, on a desktop and on a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from documents import services
from tests.documents.fakes import raw_insert_draft, raw_insert_submission
from tests.factories import SuperuserFactory, published_draft

pytestmark = pytest.mark.e2e

TITLES = [
    ("Interoperable widgets: wire format", "Grace Hopper"),
    ("Gadget naming conventions", "Ada Lovelace"),
    ("Widget discovery over multicast", "Radia Perlman"),
    ("Best current practice for gadget registries", "Barbara Liskov"),
    ("Transport-independent widget framing", "Vint Cerf"),
    ("Security considerations for widget relays", "Whitfield Diffie"),
]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def site(transactional_db) -> dict[str, str]:
    editor = SuperuserFactory(username="editor")
    drafts = [published_draft(actor=editor, title=title, submitted_by=author) for title, author in TITLES]
    withdrawn = services.withdraw_draft(actor=editor, draft=drafts[1], reason="Superseded by a revision")
    fake = raw_insert_submission("ML-990", title="Widgets straight into the database", status="published",
                                 approved_by_id=editor.pk)  # fmt: skip
    raw_insert_draft("rfc990", submission_id=fake, published_by_id=editor.pk)
    return {"document": drafts[0].name, "withdrawn": withdrawn.name, "fake": "rfc990"}


def watch_console(page: Page) -> list[str]:
    """Console errors (a Content-Security-Policy violation is one) and page errors, as they come; not the
    "failed to load" of a page answered 404 or 410 on purpose (or of /favicon.ico, which there is none of)."""
    errors: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_a_reader_lists_searches_and_opens_documents_and_never_sees_the_fake(
    page: Page, live_server, site, snapshot
):
    errors = watch_console(page)
    page.goto(f"{live_server.url}/")

    rows = page.locator("ol.documents li")
    expect(rows).to_have_count(len(TITLES) - 1)  # the withdrawn one is not listed
    expect(rows.first).to_contain_text("Security considerations for widget relays")
    expect(page.locator("body")).not_to_contain_text(site["fake"])
    expect(page.locator("body")).not_to_contain_text(site["withdrawn"])
    expect(page.locator('link[rel="alternate"][type="application/atom+xml"]')).to_have_count(1)
    assert page.locator("script").count() == 0
    snapshot(page, "public-index")

    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()

    page.get_by_label("Search by name or title").fill("widget")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Documents matching “widget”")
    expect(rows).to_have_count(4)
    expect(page.locator("body")).not_to_contain_text(site["fake"])

    page.get_by_role("link", name="Interoperable widgets: wire format").click()
    expect(page.locator("h1")).to_have_text("Interoperable widgets: wire format")
    expect(page.locator("dl")).to_contain_text("Grace Hopper")
    assert page.url == f"{live_server.url}/{site['document']}/"
    snapshot(page, "public-document")

    response = page.goto(f"{live_server.url}/{site['withdrawn']}/")
    assert response is not None and response.status == 410
    expect(page.locator("h1")).to_have_text(f"{site['withdrawn']} was withdrawn")

    response = page.goto(f"{live_server.url}/{site['fake']}/")
    assert response is not None and response.status == 404
    assert errors == []


def test_the_site_reads_well_on_a_phone(browser, live_server, site, snapshot):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        errors = watch_console(page)
        page.goto(f"{live_server.url}/")
        expect(page.locator("ol.documents li")).to_have_count(len(TITLES) - 1)
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        search = page.get_by_label("Search by name or title").bounding_box()
        assert search is not None and search["x"] + search["width"] <= PHONE["width"]
        snapshot(page, "public-index-phone")
        page.goto(f"{live_server.url}/{site['document']}/")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert errors == []
    finally:
        context.close()
