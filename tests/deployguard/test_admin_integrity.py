"""The integrity page: every rule and its count as last computed, linked to its rows; a recount button."""

from __future__ import annotations

import pytest
from django.test import Client

from deployguard import integrity_runs, state
from deployguard.admin import integrity as page
from deployguard.integrity import default_registry
from deployguard.models_operations import IntegrityRun
from tests.deployguard.admin_support import INTEGRITY, RECOUNT, messages_of
from tests.documents.fakes import raw_insert_submission
from tests.factories import OperatorFactory, SubmissionFactory

pytestmark = pytest.mark.django_db


def rule_row(body: str, rule_id: str) -> str:
    anchor = f'id="rule-{rule_id.replace(".", "").lower()}"'
    return body.split(anchor)[1].split("</tr>")[0]


def test_before_any_count_the_page_lists_every_rule_and_says_to_recount(operator_client):
    body = operator_client.get(INTEGRITY).content.decode()

    assert page.NEVER_COMPUTED in body
    for rule in default_registry.select():
        assert f"<code>{rule.id}</code>" in body
        assert "not counted yet" in rule_row(body, rule.id)


def test_the_page_shows_the_stored_counts_linked_to_the_filtered_changelist_without_counting_again(
    admin_client, superuser
):
    SubmissionFactory(actor=superuser)
    raw_insert_submission("ML-901", submitted_by="Test User")
    integrity_runs.record(computed_by="pytest")
    raw_insert_submission("ML-902", submitted_by="Test User")  # after the count: not shown yet

    body = admin_client.get(INTEGRITY).content.decode()

    row = rule_row(body, "documents.E007")
    assert '<a href="/admin/documents/submission/?integrity=documents.E007"><strong>1</strong></a>' in row
    assert "error" in row and "submissions" in row
    assert "by pytest" in body
    filtered = admin_client.get("/admin/documents/submission/?integrity=documents.E007").content.decode()
    assert "ML-901" in filtered and "ML-902" in filtered


def test_recounting_stores_fresh_counts_and_says_what_it_found(operator_client):
    raw_insert_submission("ML-901", submitted_by="Test User")

    response = operator_client.post(RECOUNT, follow=True)

    run = IntegrityRun.objects.get()
    failing = sum(1 for count in run.counts.values() if count)
    [message] = messages_of(response)
    assert message.startswith(f"Counted the rows of {len(run.counts)} rules in ")
    assert message.endswith(f": {failing} rules have rows.")
    assert run.computed_by == "operator (admin)"
    assert run.origin == f"request:POST {RECOUNT}"


def test_recounting_works_while_deploy_mode_is_on(operator_client, fast_switch):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")

    response = operator_client.post(RECOUNT)

    assert response.status_code == 302
    assert IntegrityRun.objects.count() == 1


def test_a_get_of_the_recount_url_counts_nothing(operator_client):
    assert operator_client.get(RECOUNT).status_code == 302
    assert IntegrityRun.objects.count() == 0


def test_a_recount_without_a_csrf_token_is_refused(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    assert client.post(RECOUNT).status_code == 403
    assert IntegrityRun.objects.count() == 0


def test_staff_without_the_view_permission_get_403_from_the_page_and_the_recount(staff_client):
    assert staff_client.get(INTEGRITY).status_code == 403
    assert staff_client.post(RECOUNT).status_code == 403
    assert IntegrityRun.objects.count() == 0


def test_counts_link_to_rows_only_for_users_who_may_see_them(db):
    raw_insert_submission("ML-901", submitted_by="Test User")
    integrity_runs.record(computed_by="pytest")
    client = Client()
    client.force_login(OperatorFactory(operations=("view_operations",)))  # no documents permission

    row = rule_row(client.get(INTEGRITY).content.decode(), "documents.E007")

    assert "<a " not in row
    assert "<strong>1</strong></td>" in row
