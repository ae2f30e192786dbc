"""The public site as readers get it: the listing, search, a page per document, 410 and 404, the feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from documents import listing, services, views
from documents.models import PublishedDraft, Submission
from tests.documents.fakes import raw_insert_draft, raw_insert_submission
from tests.factories import published_draft
from tests.utils import behind_the_services, rewriting_history

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"


def names_on(response) -> list[str]:
    return re.findall(r'<span class="name">(rfc\d+)</span>', response.content.decode())


def test_the_index_lists_published_documents_newest_first_with_name_title_and_date(client, superuser):
    first = published_draft(actor=superuser, title="Interoperable widgets")
    second = published_draft(actor=superuser, title="Gadget naming conventions")

    response = client.get("/")

    assert response.status_code == 200
    assert names_on(response) == [second.name, first.name]
    body = response.content.decode()
    assert '<bdi class="title">Gadget naming conventions</bdi>' in body
    day = timezone.now().date()
    assert f'<time datetime="{second.published_at.date().isoformat()}' in body
    assert f"{day.day} {day:%b %Y}" in body
    assert f'href="{reverse("documents:document", args=[second.name])}"' in body


def test_the_index_advertises_the_atom_feed_and_has_a_labelled_search_box_and_no_script(client, superuser):
    published_draft(actor=superuser)

    body = client.get("/").content.decode()

    assert '<link rel="alternate" type="application/atom+xml"' in body
    assert f'href="{reverse("documents:feed")}"' in body
    assert '<label for="q">Search by name or title</label>' in body
    assert '<form class="search" role="search"' in body and 'method="get"' in body
    assert "<script" not in body.lower()
    assert '<meta name="viewport"' in body


def test_an_empty_site_says_nothing_is_published(client):
    response = client.get("/")
    assert views.NOTHING_PUBLISHED in response.content.decode()


def test_the_listing_pages_by_cursor_and_links_both_ways(client, superuser, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    names = [published_draft(actor=superuser).name for _ in range(5)][::-1]

    first = client.get("/")
    older = re.search(r'<a rel="next" href="\?before=([0-9.]+)">Older', first.content.decode())
    assert names_on(first) == names[:2]
    assert 'rel="prev"' not in first.content.decode()

    second = client.get(f"/?before={older[1]}")
    newer = re.search(r'<a rel="prev" href="\?after=([0-9.]+)">', second.content.decode())
    assert names_on(second) == names[2:4]
    assert names_on(client.get(f"/?after={newer[1]}")) == names[:2]


@pytest.mark.parametrize(
    "query",
    [
        "before=garbage",
        "before=1.2.3",
        "after=-1.5",
        "before=1.1&after=1.1",
        "before=" + "9" * 40 + ".1",
        "before=%00",
        "q=widgets&after=1.1",
    ],
)
def test_a_cursor_this_site_never_made_is_a_404(client, query):
    response = client.get(f"/?{query}")
    assert response.status_code == 404
    assert views.NOT_FOUND in response.content.decode()


@pytest.mark.parametrize(
    "query", ["page=2", "page=garbage", "page=-1", "page=999999999999999999999", "utm_source=x"]
)
def test_unknown_parameters_are_ignored(client, superuser, query):
    draft = published_draft(actor=superuser)
    assert names_on(client.get(f"/?{query}")) == [draft.name]


def test_search_by_word_and_by_name_shows_the_terms_back(client, superuser):
    widgets = published_draft(actor=superuser, title="Interoperable widgets")
    published_draft(actor=superuser, title="Gadget naming conventions")

    by_word = client.get("/", {"q": "  interop  "})
    by_name = client.get("/", {"q": widgets.name.upper()})

    assert names_on(by_word) == [widgets.name]
    assert 'value="interop"' in by_word.content.decode()
    assert "Documents matching “<bdi>interop</bdi>”" in by_word.content.decode()
    assert names_on(by_name) == [widgets.name]


def test_a_search_that_finds_nothing_says_so_and_one_with_no_word_says_what_to_type(client, superuser):
    published_draft(actor=superuser, title="Interoperable widgets")

    nothing = client.get("/", {"q": "teapot"})
    no_word = client.get("/", {"q": "%%% ---"})

    assert views.NO_MATCHES.format(text="teapot") in nothing.content.decode()
    assert names_on(no_word) == []
    assert views.SEARCH_HINT in no_word.content.decode()


def test_a_hostile_search_is_bounded_escaped_and_answered(client, superuser):
    published_draft(actor=superuser, title="Interoperable widgets")
    hostile = "<script>alert(1)</script>\x00 ' OR 1=1; -- " + "widgets " * 5000

    response = client.get("/", {"q": hostile})

    assert response.status_code == 200
    body = response.content.decode()
    assert "<script>alert" not in body
    assert "\x00" not in body
    shown = re.search(r'name="q" type="search" value="([^"]*)"', body)[1]
    assert len(shown) <= 2 * listing.SEARCH_MAX_LENGTH  # escaped, from at most SEARCH_MAX_LENGTH characters


def test_a_document_page_shows_its_name_title_author_and_date(client, superuser):
    draft = published_draft(actor=superuser, title="Interoperable widgets", submitted_by="Grace Hopper")

    response = client.get(f"/{draft.name}/")

    assert response.status_code == 200
    body = response.content.decode()
    assert '<p class="name">' + draft.name in body
    assert "<h1><bdi>Interoperable widgets</bdi></h1>" in body
    assert "<dd><bdi>Grace Hopper</bdi></dd>" in body
    assert f"<title>{draft.name}: Interoperable widgets · {views.SITE_NAME}</title>" in body


def test_html_and_bidi_controls_in_a_title_are_shown_as_text(client, superuser):
    title = '<img src=x onerror=alert(1)> "quoted" & \u202egnirts desrever\u202c widgets'
    draft = published_draft(actor=superuser, title=title)

    for url in ("/", f"/{draft.name}/"):
        body = client.get(url).content.decode()
        assert "<img src=x" not in body
        assert "&lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot; &amp;" in body
        assert "<bdi" in body


def test_a_withdrawn_document_answers_410_with_a_short_notice(client, superuser):
    draft = published_draft(actor=superuser)
    withdrawn = services.withdraw_draft(actor=superuser, draft=draft, reason="Superseded by a revision")

    response = client.get(f"/{draft.name}/")

    assert response.status_code == 410
    day = withdrawn.withdrawn_at
    notice = views.WITHDRAWN_NOTICE.format(name=draft.name, date=f"{day.day} {day:%B %Y}")
    assert notice in response.content.decode()
    assert draft.submission.title not in response.content.decode()
    assert draft.name not in names_on(client.get("/"))


def test_a_quarantined_document_is_a_404_indistinguishable_from_a_missing_one(client, superuser):
    draft = published_draft(actor=superuser)
    services.quarantine_rows(model=PublishedDraft, pks=[draft.pk], reason="Scrub run r1: documents.E021")
    services.quarantine_rows(
        model=Submission, pks=[draft.submission_id], reason="Scrub run r1: documents.E020"
    )

    hidden = client.get(f"/{draft.name}/")
    missing = client.get("/rfc999999/")

    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    assert dict(hidden.headers) == dict(missing.headers)


def test_a_raw_sql_fake_is_on_no_page_and_in_no_feed(client, superuser):
    submission = raw_insert_submission("ML-902", title="Widgets for everyone", status="published",
                                       approved_by_id=superuser.pk)  # fmt: skip
    raw_insert_draft("rfc902", submission_id=submission, published_by_id=superuser.pk)

    assert client.get("/rfc902/").status_code == 404
    assert "rfc902" not in client.get("/").content.decode()
    assert "rfc902" not in client.get("/", {"q": "widgets"}).content.decode()
    assert names_on(client.get("/", {"q": "rfc902"})) == []
    assert "rfc902" not in client.get("/feed/").content.decode()


@pytest.mark.parametrize(
    "path",
    [
        "/RFC12/",
        "/Rfc12/",
        "/rfc012/",
        "/rfc12%00/",
        "/rfc12%2F/",
        "/rfc1 2/",
        "/rfc\uff11\uff12/",
        "/rfc12/extra/",
    ],
)
def test_only_the_exact_name_finds_a_document(client, superuser, path):
    for _ in range(12):
        draft = published_draft(actor=superuser)
    assert draft.name == "rfc12"
    assert client.get("/rfc12/").status_code == 200

    response = client.get(path)

    assert response.status_code == 404
    assert views.NOT_FOUND in response.content.decode()


def test_a_name_without_its_slash_is_redirected_to_it(client):
    response = client.get("/rfc12")
    assert response.status_code == 301
    assert response["Location"] == "/rfc12/"


def test_a_very_long_name_is_a_404_not_an_error(client):
    assert client.get("/rfc" + "9" * 400 + "/").status_code == 404


def test_the_feed_is_atom_with_the_newest_publications(client, superuser):
    older = published_draft(actor=superuser, title="Interoperable widgets", submitted_by="Grace Hopper")
    newer = published_draft(actor=superuser, title="Gadget naming conventions")

    response = client.get("/feed/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/atom+xml; charset=utf-8"
    feed = ET.fromstring(response.content)  # noqa: S314 (this site's own feed)
    assert feed.tag == f"{ATOM}feed"
    entries = feed.findall(f"{ATOM}entry")
    assert [entry.find(f"{ATOM}title").text for entry in entries] == [
        f"{newer.name}: Gadget naming conventions",
        f"{older.name}: Interoperable widgets",
    ]
    assert entries[1].find(f"{ATOM}link").get("href") == f"http://testserver/{older.name}/"
    assert entries[1].find(f"{ATOM}author/{ATOM}name").text == "Grace Hopper"


def test_writing_methods_are_refused_on_public_pages(client, superuser):
    draft = published_draft(actor=superuser)
    for path in ("/", f"/{draft.name}/", "/feed/"):
        assert client.post(path).status_code in (403, 405)  # CSRF refuses first, or the view does
        assert client.put(path).status_code in (403, 405)


def test_the_feed_survives_markup_and_control_characters_in_a_title(client, superuser):
    # The model refuses control characters now: this title is from before, as its history says.
    draft = published_draft(actor=superuser, title="<script>alert(1)</script> widgets and more")
    title = "<script>alert(1)</script> widgets\x0b\x1b and more"
    with rewriting_history("a title from before the model refused it"), connection.cursor() as cursor:
        for table in ("documents_submission", "documents_historicalsubmission"):
            cursor.execute(f"UPDATE {table} SET title = %s WHERE id = %s", [title, draft.submission_id])  # noqa: S608

    response = client.get("/feed/")

    assert response.status_code == 200
    assert b"<script>" not in response.content
    entry = ET.fromstring(response.content).find(f"{ATOM}entry")  # noqa: S314 (this site's own feed)
    assert entry.find(f"{ATOM}title").text.endswith("<script>alert(1)</script> widgets\ufffd\ufffd and more")


def test_a_head_request_gets_the_headers_without_a_body(client, superuser):
    draft = published_draft(actor=superuser)
    for path in ("/", f"/{draft.name}/", "/feed/"):
        response = client.head(path)
        assert response.status_code == 200
        assert response.content == b""
        assert response["ETag"] == client.get(path)["ETag"]


def test_text_that_is_not_utf8_in_a_hidden_row_breaks_no_page(client, superuser, on_postgresql):
    if on_postgresql:
        pytest.skip("PostgreSQL refuses text that is not valid UTF-8")
    shown = published_draft(actor=superuser, title="Interoperable widgets")
    changed = published_draft(actor=superuser, title="Gadget naming conventions")
    fake = raw_insert_submission("ML-950", status="published", approved_by_id=superuser.pk)
    raw_insert_draft("rfc950", submission_id=fake, published_by_id=superuser.pk)
    assert client.get(f"/{changed.name}/").status_code == 200  # its decision is remembered
    with behind_the_services(), connection.cursor() as cursor:
        for pk in (fake, changed.submission_id):
            cursor.execute(
                "UPDATE documents_submission SET title = CAST(X'FFFE41' AS TEXT) WHERE id = %s", [pk]
            )

    assert client.get("/rfc950/").status_code == 404
    assert client.get(f"/{changed.name}/").status_code == 404
    for path in ("/", "/feed/", "/?q=widgets", "/?q=rfc950"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert names_on(client.get("/")) == [shown.name]
