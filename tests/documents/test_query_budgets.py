"""Query budgets for the admin: pages cost a fixed number of queries, publishing a fixed number a row."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from documents.models import PublishedDraft, Submission
from tests.documents.test_admin import hidden_inputs
from tests.factories import EditorFactory, SubmissionFactory

pytestmark = pytest.mark.django_db

SUBMISSIONS = reverse("admin:documents_submission_changelist")
DRAFTS = reverse("admin:documents_publisheddraft_changelist")
# Session, user, the staff user's two permission reads, count, and the page of rows with their
# drafts (or submissions and publishers) joined: what benchmarks/bench_admin.py also sees at a
# million rows (less the permission reads, for its superuser); and the integrity badge: the
# page's rows checked against the rules, and which of them are quarantined (2).
CHANGELIST_BUDGET = 8
# The change page's own reads, plus the provenance panel: its first and latest history records,
# their count, the rules it breaks, whether it is quarantined, and the names of the related rows
# of fields that differ from the latest record (at most a few; 5 for the panel at most here).
CHANGE_PAGE_BUDGET = 14
# Per published row: lock it to compare with what the page showed, lock the submission, check
# the rules, look for a stray draft, lock the draft counter, check the next names are free, bump
# the counter, insert the draft and its history record, update the submission and its history
# record, write the admin's log entry for Recent actions (12), plus a savepoint and its release
# around the row's transaction, the service's and the draft insert's (6), since tests run inside one.
PUBLISH_QUERIES_PER_ROW = 18


@pytest.fixture
def editor_client(client):
    client.force_login(EditorFactory())
    return client


def queries_of(action) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured.captured_queries)


def make(count: int, status: str) -> list[Submission]:
    return [SubmissionFactory(status=status) for _ in range(count)]


@pytest.mark.parametrize("url", [SUBMISSIONS, DRAFTS])
def test_a_changelist_costs_a_fixed_number_of_queries_however_many_rows(
    editor_client, url, django_assert_max_num_queries, django_assert_num_queries
):
    make(2, "published")
    editor_client.get(url)  # per-process caches (content types) are filled once, not per page
    with django_assert_max_num_queries(CHANGELIST_BUDGET):
        few = queries_of(lambda: editor_client.get(url))

    make(8, "published")
    with django_assert_num_queries(few):
        response = editor_client.get(url)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 10


@pytest.mark.parametrize(
    "params", [{"status__exact": "published"}, {"integrity": "errors"}, {"q": "widgets"}]
)
def test_a_filtered_or_searched_changelist_stays_within_the_budget(
    editor_client, params, django_assert_max_num_queries
):
    make(3, "published")
    editor_client.get(SUBMISSIONS)  # per-process caches (content types) are filled once, not per page

    with django_assert_max_num_queries(CHANGELIST_BUDGET):
        response = editor_client.get(SUBMISSIONS, params)

    assert response.status_code == 200


@pytest.mark.parametrize("status", ["submitted", "published"])
def test_a_submission_change_page_stays_within_the_budget(
    editor_client, status, django_assert_max_num_queries
):
    url = reverse("admin:documents_submission_change", args=[make(1, status)[0].pk])
    editor_client.get(url)  # per-process caches (content types) are filled once, not per page

    with django_assert_max_num_queries(CHANGE_PAGE_BUDGET):
        response = editor_client.get(url)

    assert response.status_code == 200


def test_a_draft_change_page_stays_within_the_budget(editor_client, django_assert_max_num_queries):
    draft = PublishedDraft.objects.get(submission=make(1, "published")[0])
    url = reverse("admin:documents_publisheddraft_change", args=[draft.pk])
    editor_client.get(url)  # per-process caches (content types) are filled once, not per page

    with django_assert_max_num_queries(CHANGE_PAGE_BUDGET):
        response = editor_client.get(url)

    assert response.status_code == 200


def publish_post(client, submissions: list[Submission], **extra):
    data = {"action": "publish_selected", ACTION_CHECKBOX_NAME: [str(s.pk) for s in submissions], **extra}
    return client.post(SUBMISSIONS, data)


def test_the_publish_confirmation_page_costs_the_same_for_1_or_10_rows(editor_client):
    one, ten = make(1, "approved"), make(10, "approved")

    for_one = queries_of(lambda: publish_post(editor_client, one))
    for_ten = queries_of(lambda: publish_post(editor_client, ten))

    assert for_ten == for_one


def confirm_post(client, submissions: list[Submission]):
    """Send back what the confirmation page for `submissions` holds, with a reason."""
    page = publish_post(client, submissions)
    return lambda: client.post(SUBMISSIONS, {**hidden_inputs(page), "reason": "Board decision"})


def test_publishing_costs_a_constant_number_of_queries_per_row(editor_client):
    one, ten = make(1, "approved"), make(10, "approved")

    for_one = queries_of(confirm_post(editor_client, one))
    for_ten = queries_of(confirm_post(editor_client, ten))

    assert Submission.objects.filter(status=Submission.Status.PUBLISHED).count() == 11
    assert for_ten - for_one <= 9 * PUBLISH_QUERIES_PER_ROW, (for_one, for_ten)


def test_a_small_unfiltered_changelist_shows_the_exact_count(editor_client):
    make(3, "published")

    response = editor_client.get(SUBMISSIONS)

    assert response.context["cl"].result_count == 3


def test_a_large_unfiltered_changelist_estimates_its_count_instead_of_counting_every_row(
    editor_client, monkeypatch, on_postgresql
):
    from documents.admin import LargeTablePaginator

    make(3, "published")
    if on_postgresql:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE documents_submission")  # what autovacuum does in production
    monkeypatch.setattr(LargeTablePaginator, "ESTIMATE_FROM", 2)

    with CaptureQueriesContext(connection) as captured:
        response = editor_client.get(SUBMISSIONS)
        filtered = editor_client.get(SUBMISSIONS, {"status__exact": "published"})

    assert response.context["cl"].result_count == 3
    assert filtered.context["cl"].result_count == 3
    counts = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT COUNT(*)")]
    assert len(counts) == 1 and " WHERE " in counts[0]  # only the filtered list counts rows
