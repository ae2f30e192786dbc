"""Query budgets for deploy mode: the middleware adds no query to a safe request."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext, override_settings

from deployguard import state
from deployguard.middleware import DeployModeMiddleware

pytestmark = pytest.mark.django_db

MIDDLEWARE_PATH = "deployguard.middleware.DeployModeMiddleware"


def queries_of(action) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured.captured_queries)


@pytest.mark.parametrize("method", ["get", "head", "options", "trace"])
def test_the_middleware_makes_no_query_for_a_safe_request_even_with_a_cold_cache(
    method, django_assert_num_queries
):
    middleware = DeployModeMiddleware(lambda request: HttpResponse())
    request = getattr(RequestFactory(), method)("/admin/")
    state.clear_cache()

    with django_assert_num_queries(0):
        middleware(request)


def test_an_unsafe_request_reads_the_state_at_most_once(django_assert_max_num_queries):
    middleware = DeployModeMiddleware(lambda request: HttpResponse())
    state.clear_cache()

    with django_assert_max_num_queries(1):
        middleware(RequestFactory().post("/admin/"))
    with django_assert_max_num_queries(0):
        middleware(RequestFactory().post("/admin/"))


def test_an_admin_get_costs_the_same_queries_with_and_without_the_middleware(admin_user):
    def client(with_middleware: bool) -> Client:
        middleware = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE_PATH]
        with override_settings(MIDDLEWARE=[MIDDLEWARE_PATH, *middleware] if with_middleware else middleware):
            made = Client()
            made.handler.load_middleware()
        made.force_login(admin_user)
        return made

    with_it, without_it = client(True), client(False)
    url = "/admin/documents/submission/"

    assert queries_of(lambda: with_it.get(url)) == queries_of(lambda: without_it.get(url))
