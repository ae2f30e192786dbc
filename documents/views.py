"""The public site: the listing with its search, a page per document, the Atom feed, and their caching.

Every view reads through documents.selectors (and .listing) and nothing else, writes nothing and never
touches the session, the user or a cookie, so a response is the same for everyone and a
CDN may keep it: ETag and Last-Modified from the newest change that can alter the page,
304 for a conditional GET that still matches, and Cache-Control for shared caches.
"""

from __future__ import annotations

import base64
import hashlib
from calendar import timegm
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import get_template, render_to_string
from django.utils.cache import get_conditional_response, quote_etag
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from documents import listing, selectors
from documents.feeds import LatestDocumentsFeed
from documents.listing import Cursor, Page, Search
from documents.selectors import PublicDocument, Version

SITE_NAME = "Published documents"
NOTHING_PUBLISHED = "Nothing has been published yet."
NO_MATCHES = "No published document matches “{text}”."
SEARCH_HINT = "Search for a word of a title, or a name such as rfc12."
SEARCHED_TO = "Searched the documents published down to {date}."
SEARCH_TIMED_OUT = "This search took too long. Add a word, or search for a name such as rfc12."
WITHDRAWN_NOTICE = "{name} was withdrawn on {date} and is no longer published."
NOT_FOUND = "There is no published document at this address."

# Shared caches keep a page a minute, then may serve it a minute more while they ask again
# (stale-while-revalidate), and for a day if this site answers with an error (stale-if-error).
# So a quarantined or withdrawn document can stay in a CDN for up to two minutes.
CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=60, stale-if-error=86400"
# Missing documents are kept briefly: a name may be published (or restored) a minute later.
NOT_FOUND_CACHE_CONTROL = "public, max-age=60"

TEMPLATES = Path(__file__).resolve().parent / "templates" / "documents" / "public"
STYLESHEET = "documents/public/site.css"
_RENDERING = ("views.py", "feeds.py", "selectors.py", "listing.py", "public_sql.py")  # in documents/


@cache
def release() -> str:
    """A digest of the code and templates that render the public pages: a deploy that changes how a
    page looks changes its ETag, so that no cache keeps the old page through a 304."""
    digest = hashlib.sha256()
    for path in sorted([*TEMPLATES.iterdir(), *(Path(__file__).parent / name for name in _RENDERING)]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def content_security_policy() -> str:
    """No script, nothing from elsewhere; the one inline stylesheet is allowed by its hash."""
    stylesheet = get_template(STYLESHEET).render()
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


def _public(response: HttpResponse, cache_control: str = CACHE_CONTROL) -> HttpResponse:
    response.headers.setdefault("Cache-Control", cache_control)
    response["Content-Security-Policy"] = content_security_policy()
    return response


def _conditional(request: HttpRequest, version: Version, render: Callable[[], HttpResponse]) -> HttpResponse:
    """304 when the client's copy is current, else `render()`; either way with the validators."""
    etag = quote_etag(f"{version.tag[:20]}-{release()}")
    last_modified = timegm(version.changed_at.utctimetuple()) if version.changed_at else None
    response = get_conditional_response(request, etag=etag, last_modified=last_modified)
    if response is not None and response.status_code != 304:
        return response  # 412 for a failed If-Match: nothing to cache
    if response is None:
        response = render()
    response["ETag"] = etag
    if last_modified is not None:
        response["Last-Modified"] = http_date(last_modified)
    elif "Last-Modified" in response:
        del response["Last-Modified"]  # the feed's own, which would be "now" for an empty feed
    return _public(response)


def _render(template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    # No request context: a public page cannot read the session, the user, messages or a CSRF token.
    context = {"site_name": SITE_NAME, "stylesheet": STYLESHEET, **context}
    return HttpResponse(render_to_string(f"documents/public/{template}", context), status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The site's 404 page (also handler404): the same for a missing, quarantined or fake document."""
    return _render("not_found.html", {"message": NOT_FOUND}, status=404)


def _not_found_for_readers(request: HttpRequest) -> HttpResponse:
    return _public(not_found(request), NOT_FOUND_CACHE_CONTROL)


def _cursor(request: HttpRequest, parameter: str) -> Cursor | bool | None:
    """The cursor in `?parameter=`, None when absent, False when it is not one."""
    token = request.GET.get(parameter)
    if token is None:
        return None
    return Cursor.parse(token) or False


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    before, after = _cursor(request, "before"), _cursor(request, "after")
    if before is False or after is False or (before and after):
        return _not_found_for_readers(request)  # not a link this site makes
    text = listing.clean_search_text(request.GET.get("q", ""))
    search = Search.parse(text)
    if search is not None and after:
        return _not_found_for_readers(request)  # searches go forward only

    def render() -> HttpResponse:
        unsearchable = bool(text) and search is None
        page = Page([]) if unsearchable else listing.public_page(before=before, after=after, search=search)
        response = _render("index.html", _listing_context(page, search, text, unsearchable))
        if page.timed_out:
            response["Cache-Control"] = "no-store"  # a cancelled search is no answer to keep
        return response

    return _conditional(request, selectors.site_version(), render)


def _listing_context(page: Page, search: Search | None, text: str, unsearchable: bool) -> dict[str, Any]:
    if page.timed_out:
        empty = SEARCH_TIMED_OUT
    elif unsearchable:
        empty = SEARCH_HINT
    elif search is not None:
        empty = NO_MATCHES.format(text=text)
    else:
        empty = NOTHING_PUBLISHED
    searched_to = page.searched_to
    return {
        "documents": [vars(found) for found in page.documents],
        "older": page.older.token if page.older else None,
        "newer": page.newer.token if page.newer else None,
        "query": text,
        "searching": bool(text),
        "empty_message": empty,
        "searched_to": SEARCHED_TO.format(date=_day(searched_to.published_at)) if searched_to else None,
        "search_further": searched_to.token if searched_to else None,
    }


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%B %Y}"


@require_safe
def document(request: HttpRequest, name: str) -> HttpResponse:
    found = selectors.public_document(name)
    if found is None:
        return _not_found_for_readers(request)
    return _conditional(request, selectors.document_version(found), lambda: _document_page(found))


def _document_page(found: PublicDocument) -> HttpResponse:
    if found.withdrawn_at is not None:
        notice = WITHDRAWN_NOTICE.format(name=found.name, date=_day(found.withdrawn_at))
        return _render("withdrawn.html", {"name": found.name, "notice": notice}, status=410)
    # Templates get dicts: a variable lookup on an object first tries it as a dict, and fails.
    return _render("document.html", {"document": vars(found)})


@require_safe
def feed(request: HttpRequest) -> HttpResponse:
    return _conditional(request, selectors.site_version(), lambda: LatestDocumentsFeed()(request))
