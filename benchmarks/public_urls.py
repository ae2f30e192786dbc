"""The benchmark server's routes (benchmarks/bench_public.py): the project's, plus a bare document view."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import path

from documents.views import SITE_NAME, STYLESHEET
from project.urls import urlpatterns as site

BARE_PATH = "_bench/bare-document/"


def bare_document(request: HttpRequest) -> HttpResponse:
    """The document page's template rendered from a dict: no query, no validator, no headers of its own."""
    document = {
        "name": "rfc500001",
        "title": "Guidelines for interoperable widgets, part 500001",
        "author": "Grace Hopper",
        "published_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    context = {"site_name": SITE_NAME, "stylesheet": STYLESHEET, "document": document}
    return HttpResponse(render_to_string("documents/public/document.html", context))


urlpatterns = [path(BARE_PATH, bare_document), *site]
