"""Query budgets for deploy mode: no query for a safe request, none per statement for a write."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
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
    state.current()  # a process's first read also checks, once, that the state table exists
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


def test_a_protected_write_costs_one_state_read_per_cache_lifetime_and_nothing_per_statement():
    state.clear_cache()
    with CaptureQueriesContext(connection) as first:
        Group.objects.create(name="first")  # reads the state, then writes
    with CaptureQueriesContext(connection) as later:
        for number in range(3):
            Group.objects.create(name=f"later {number}")  # the same statement: judged from the cache

    assert [query["sql"] for query in first.captured_queries][-1].startswith('INSERT INTO "auth_group"')
    assert len(first.captured_queries) <= 3  # the write, the state row, and the state table check once
    assert len(later.captured_queries) == 3
