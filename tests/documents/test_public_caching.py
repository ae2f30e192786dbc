"""Caching the public pages: validators from the newest relevant change, 304s, headers a CDN can act on."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from django.db import connection
from django.test import Client

from deployguard.models_integrity import ScrubRun
from documents import services, views
from documents.models import PublishedDraft, Submission
from tests.documents.fakes import raw_insert_draft, raw_insert_submission, raw_update_submission
from tests.factories import EditorFactory, SubmissionFactory, published_draft
from tests.utils import behind_the_services, run_command
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

PAGES = ("/", "/feed/")


def etags(client: Client, *paths: str) -> dict[str, str]:
    return {path: client.get(path)["ETag"] for path in paths}


@pytest.fixture
def document(superuser) -> PublishedDraft:
    return published_draft(actor=superuser, title="Interoperable widgets")


@pytest.mark.parametrize("path", ["/", "/feed/", "DOCUMENT", "/?q=widgets", "/?q=rfc1"])
def test_public_pages_carry_validators_and_cdn_cache_control(client, document, path):
    path = f"/{document.name}/" if path == "DOCUMENT" else path

    response = client.get(path)

    assert response.status_code == 200
    assert response["Cache-Control"] == views.CACHE_CONTROL
    assert response["Cache-Control"].startswith("public, max-age=60, stale-while-revalidate=")
    assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    newest = max(document.history.latest().history_date, document.submission.history.latest().history_date)
    assert parsedate_to_datetime(response["Last-Modified"]) == newest.replace(microsecond=0)
    assert response["Content-Security-Policy"].startswith("default-src 'none'; style-src 'sha256-")
    assert "Vary" not in response
    assert "Set-Cookie" not in response


@pytest.mark.parametrize("path", ["/", "/feed/", "DOCUMENT"])
def test_a_conditional_get_that_still_matches_gets_304_with_its_validators(client, document, path):
    path = f"/{document.name}/" if path == "DOCUMENT" else path
    first = client.get(path)

    by_etag = client.get(path, headers={"If-None-Match": first["ETag"]})
    by_date = client.get(path, headers={"If-Modified-Since": first["Last-Modified"]})
    stale = client.get(path, headers={"If-None-Match": '"something-else"'})

    assert by_etag.status_code == by_date.status_code == 304
    assert by_etag.content == b""
    assert by_etag["ETag"] == first["ETag"]
    assert by_etag["Cache-Control"] == views.CACHE_CONTROL
    assert stale.status_code == 200


def test_a_withdrawn_document_is_cacheable_and_revalidates(client, superuser, document):
    services.withdraw_draft(actor=superuser, draft=document, reason="Superseded")
    gone = client.get(f"/{document.name}/")

    again = client.get(f"/{document.name}/", headers={"If-None-Match": gone["ETag"]})

    assert gone.status_code == 410
    assert gone["Cache-Control"] == views.CACHE_CONTROL
    assert again.status_code == 304


def test_a_missing_document_is_cached_briefly_and_has_no_validators(client):
    response = client.get("/rfc4242/")
    assert response.status_code == 404
    assert response["Cache-Control"] == views.NOT_FOUND_CACHE_CONTROL
    assert "ETag" not in response and "Last-Modified" not in response


def test_the_listing_and_feed_validators_change_with_each_publication_and_withdrawal(
    client, superuser, document
):
    before = etags(client, *PAGES)
    newer = published_draft(actor=superuser)
    published = etags(client, *PAGES)
    services.withdraw_draft(actor=superuser, draft=newer, reason="Superseded")
    withdrawn = etags(client, *PAGES)

    for path in PAGES:
        assert len({before[path], published[path], withdrawn[path]}) == 3
    assert client.get("/", headers={"If-None-Match": before["/"]}).status_code == 200


def test_a_change_to_a_published_submission_changes_the_validators(client, superuser, document):
    before = etags(client, *PAGES, f"/{document.name}/")

    # Any change with a history record to a published submission: here its quarantine.
    services.quarantine_rows(
        model=Submission, pks=[document.submission_id], reason="Scrub run r9: documents.E007"
    )

    after = etags(client, *PAGES)
    for path in PAGES:
        assert after[path] != before[path]
    assert client.get(f"/{document.name}/").status_code == 404


def test_scrub_apply_and_restore_each_change_the_validators(client, superuser, settings, document):
    raw_submission = raw_insert_submission("ML-902", status="published", approved_by_id=superuser.pk)
    raw_insert_draft("rfc902", submission_id=raw_submission, published_by_id=superuser.pk)
    for _ in range(9):  # enough legitimate rows that the scrub needs no --force
        published_draft(actor=superuser)
    seen = [etags(client, *PAGES)]

    assert run_command("scrub_fake_data", "--apply")[2] == 0
    seen.append(etags(client, *PAGES))
    assert run_command("scrub_fake_data", "--restore", ScrubRun.objects.get().id)[2] == 0
    seen.append(etags(client, *PAGES))

    for path in PAGES:
        assert len({etag[path] for etag in seen}) == 3


def test_a_new_test_word_hides_a_document_and_changes_every_validator_at_once(client, settings, document):
    before = etags(client, *PAGES, f"/{document.name}/")

    settings.DOCUMENTS_TEST_WORDS = ["widgets"]

    assert client.get(f"/{document.name}/").status_code == 404
    after = etags(client, *PAGES)
    for path in PAGES:
        assert after[path] != before[path]


def test_work_on_unpublished_submissions_leaves_the_listing_validators_alone(client, superuser, document):
    before = etags(client, *PAGES)

    submission = SubmissionFactory(actor=superuser, title="Not public yet")
    services.approve_submission(actor=superuser, submission=submission)
    services.reject_submission(
        actor=superuser, submission=SubmissionFactory(actor=superuser), reason="Off topic"
    )

    assert etags(client, *PAGES) == before


def test_a_document_page_changes_only_with_its_own_document(client, superuser, document):
    page = f"/{document.name}/"
    before = client.get(page)["ETag"]

    published_draft(actor=superuser)
    assert client.get(page)["ETag"] == before

    services.withdraw_draft(actor=superuser, draft=document, reason="Superseded")
    assert client.get(page)["ETag"] != before


def test_a_document_page_validator_changes_when_the_site_is_redeployed_with_other_templates(
    client, document, monkeypatch, tmp_path
):
    page = f"/{document.name}/"
    before = client.get(page)["ETag"]
    for template in views.TEMPLATES.iterdir():
        (tmp_path / template.name).write_bytes(template.read_bytes())
    (tmp_path / "document.html").write_text((views.TEMPLATES / "document.html").read_text() + "<!-- v2 -->")
    monkeypatch.setattr(views, "TEMPLATES", tmp_path)
    views.release.cache_clear()
    try:
        assert client.get(page)["ETag"] != before
    finally:
        views.release.cache_clear()


def test_staff_and_anonymous_readers_get_the_same_response_and_no_cookie(client, superuser, document):
    staff = Client()
    staff.force_login(EditorFactory())
    staff.cookies["messages"] = "a pending message"

    for path in ("/", f"/{document.name}/", "/feed/", "/?q=widgets", "/rfc4242/"):
        anonymous, logged_in = client.get(path), staff.get(path)
        assert logged_in.content == anonymous.content
        assert dict(logged_in.headers) == dict(anonymous.headers)
        assert not logged_in.cookies
        assert "Cookie" not in logged_in.get("Vary", "")


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_raw_sql_write_without_history_changes_the_listing_validator(superuser, document):
    client = Client()
    before = client.get("/")["ETag"]
    # A raw write the history never sees, whose statistics the server flushes once it commits.
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE documents_publisheddraft SET status = status WHERE id = %s", [document.pk])
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("COMMIT")

    wait_until(
        lambda: client.get("/")["ETag"] != before,
        "the listing's ETag to change after a raw write",
        describe=lambda: client.get("/")["ETag"],
    )


def test_a_raw_sql_edit_hides_the_document_and_its_page_stops_answering_304(client, document, on_postgresql):
    page = f"/{document.name}/"
    listing_before = client.get("/")["ETag"]
    page_before = client.get(page)["ETag"]

    raw_update_submission(document.submission_id, title="Changed behind the history's back")

    # The row now differs from its latest history record: readers no longer see it, and a cache
    # revalidating the page gets the 404, not a 304.
    assert client.get(page, headers={"If-None-Match": page_before}).status_code == 404
    assert "Changed behind" not in client.get("/").content.decode()
    if not on_postgresql:
        # What the README says SQLite's listing validator cannot see: a change without a history
        # record. A cache revalidating the listing keeps its last recorded (legitimate) copy until
        # the next recorded change.
        assert client.get("/")["ETag"] == listing_before
