"""Public reads never write, keep answering in deploy mode, and cost a fixed number of queries."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import DatabaseError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from deployguard import state
from deployguard.exceptions import DeployModeActive
from deployguard.sql_writes import write_targets
from documents import listing, services
from tests.factories import EditorFactory, published_draft

WRITE = re.compile(
    r"^\s*(INSERT|UPDATE|DELETE|REPLACE|MERGE|UPSERT|CREATE|ALTER|DROP|TRUNCATE)\b", re.IGNORECASE
)


@pytest.fixture
def site(superuser) -> dict[str, str]:
    """Published documents, a withdrawn one, and a URL for every kind of public answer."""
    documents = [published_draft(actor=superuser, title=f"Interoperable widgets, part {n}") for n in range(4)]
    withdrawn = services.withdraw_draft(actor=superuser, draft=documents[0], reason="Superseded")
    return {
        "index": "/",
        "older page": f"/?before={listing.Cursor(documents[2].published_at, documents[2].pk).token}",
        "newer page": f"/?after={listing.Cursor(documents[1].published_at, documents[1].pk).token}",
        "search": "/?q=interoperable+widg",
        "search by name": f"/?q={documents[1].name}",
        "document": f"/{documents[1].name}/",
        "withdrawn": f"/{withdrawn.name}/",
        "missing": "/rfc99999/",
        "feed": "/feed/",
        "bad cursor": "/?before=nope",
    }


def statements_of(client: Client, path: str, **headers: str) -> tuple[int, list[str]]:
    """The status of GET `path` and every SQL statement the whole request ran, middleware included."""
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = client.get(path, headers=headers)
    return response.status_code, seen


@pytest.mark.django_db
@pytest.mark.parametrize("reader", ["anonymous", "staff with a session and a messages cookie"])
def test_no_public_request_writes_anything(site, reader):
    client = Client()
    staff = None
    if reader != "anonymous":
        staff = EditorFactory()
        client.force_login(staff)
        client.cookies["messages"] = "left over from the admin"
        last_login = get_user_model().objects.get(pk=staff.pk).last_login
        sessions = list(Session.objects.values_list("session_key", "session_data", "expire_date"))

    for name, path in site.items():
        status, statements = statements_of(client, path)
        conditional = client.get(path).get("ETag")
        revalidated, statements_304 = statements_of(
            client, path, **({"If-None-Match": conditional} if conditional else {})
        )

        assert status in (200, 404, 410), (name, status)
        assert revalidated == (304 if conditional else status), (name, revalidated)
        for sql in statements + statements_304:
            assert not write_targets(sql), (name, sql)
            assert not WRITE.match(sql), (name, sql)
        assert not client.cookies.get("sessionid") or reader != "anonymous"

    if staff is not None:
        assert get_user_model().objects.get(pk=staff.pk).last_login == last_login
        assert list(Session.objects.values_list("session_key", "session_data", "expire_date")) == sessions


@pytest.mark.django_db
def test_a_public_response_sets_no_cookie_even_for_a_reader_with_a_session(site):
    client = Client()
    client.force_login(EditorFactory())
    client.cookies["messages"] = "left over from the admin"
    for name, path in site.items():
        response = client.get(path)
        assert "Set-Cookie" not in response, name
        assert not response.cookies, name


@pytest.fixture
def frozen(transactional_db, settings):
    """Deploy mode switched on the way deploy_safe does it: the shared state, then the database freeze."""
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    state.enable(reason="Release 2026.12", changed_by="ci@build-9")
    try:
        state.drain_in_flight_writes(timeout=30)
        yield
    finally:
        state.disable(changed_by="pytest")


def test_every_public_page_keeps_answering_while_deploy_mode_is_on(site, frozen):
    expected = {"withdrawn": 410, "missing": 404, "bad cursor": 404}
    client = Client()
    assert state.current().enabled
    if connection.vendor == "postgresql":
        # The setup's writes reach PostgreSQL's statistics, which the listing's ETag reads, when this
        # connection next reports them: now, rather than between a page and its revalidation.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")

    for name, path in site.items():
        response = client.get(path)
        assert response.status_code == expected.get(name, 200), name
        assert response.get("X-Deploy-Mode") is None
        if response.status_code == 200:
            assert client.get(path, headers={"If-None-Match": response["ETag"]}).status_code == 304

    # ...while writes are refused for real, by the guard and by the database.
    with pytest.raises((DeployModeActive, DatabaseError)), connection.cursor() as cursor:
        cursor.execute("UPDATE documents_publisheddraft SET status = status")
    assert client.post("/").status_code == 503


# Queries per page: the version (ETag and Last-Modified), the page, and with a cursor whether
# there is a page on the other side. A word search on SQLite reads where its window ends first.
BUDGETS = {
    "index": 2,
    "older page": 3,
    "newer page": 3,
    "search by name": 2,
    "document": 1,
    "withdrawn": 1,
    "missing": 1,
    "feed": 2,
    "bad cursor": 0,
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", [*BUDGETS, "search"])
def test_a_public_page_costs_a_fixed_number_of_queries_however_many_documents(
    site, superuser, name, on_postgresql
):
    path = site[name]
    client = Client()
    client.get(path)  # per-process caches (the compiled definition) are filled once, not per page
    with CaptureQueriesContext(connection) as few:
        client.get(path)
    for n in range(12):
        published_draft(actor=superuser, title=f"Interoperable widgets, part {n + 10}")
    with CaptureQueriesContext(connection) as many:
        client.get(path)

    assert len(many) == len(few)
    if name in BUDGETS:
        assert len(few) == BUDGETS[name]
    else:
        # The version, then on SQLite the window's end and the page. On PostgreSQL, in a transaction
        # (a savepoint inside the test's) with its timeout and JIT settings: the newest drafts, then
        # the title index, then the page; at most one more setting for a word common only in older
        # documents.
        if on_postgresql:
            assert 7 <= len(few) <= 9, len(few)
        else:
            assert len(few) == 3, len(few)


@pytest.mark.django_db
def test_a_304_costs_one_query(site):
    client = Client()
    for name in ("index", "document", "feed"):
        etag = client.get(site[name])["ETag"]
        with CaptureQueriesContext(connection) as queries:
            assert client.get(site[name], headers={"If-None-Match": etag}).status_code == 304
        assert len(queries) == 1, name
