"""The quarantine runs page: each run's rows, reason and operator, and its restore behind a confirmation."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connections
from django.test import Client

from deployguard import scrub, state
from deployguard.admin import quarantine as page
from deployguard.integrity import default_registry
from deployguard.models_integrity import ScrubRun
from documents.models import DataSource, Submission
from tests.deployguard.admin_support import QUARANTINE, messages_of
from tests.deployguard.support import snapshot
from tests.documents.fakes import raw_insert_submission
from tests.factories import SubmissionFactory, SuperuserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(superuser) -> ScrubRun:
    SubmissionFactory(actor=superuser, title="Interoperable widgets")
    raw_insert_submission("ML-901", submitted_by="Test User")
    raw_insert_submission("ML-902", title="Fake widgets")
    quarantined = scrub.quarantine(scrub.select_rows(default_registry.select()))
    assert quarantined is not None
    return quarantined


def quarantined() -> set[str]:
    return set(
        Submission.objects.filter(data_source=DataSource.QUARANTINE).values_list("ml_number", flat=True)
    )


def test_the_list_shows_each_run_with_its_rows_rules_operator_and_state(operator_client, run):
    body = operator_client.get(QUARANTINE).content.decode()

    row = body.split(f"{run.id}</a>")[1].split("</tr>")[0]
    assert "2 submissions" in row
    assert "documents.E007" in row
    assert "in force" in row
    assert run.origin in row


def test_a_run_page_lists_its_rows_with_their_state_before_quarantine(operator_client, run):
    body = operator_client.get(f"{QUARANTINE}{run.id}/").content.decode()

    rows = body.split('id="run-rows"')[1].split("</table>")[0]
    assert rows.count("documents.submission") == 2
    assert "data_source=production, is_legitimate=True" in rows
    assert 'id="restore-run"' in body


def test_restoring_shows_a_confirmation_first_and_changes_nothing_until_it_is_confirmed(operator_client, run):
    before = snapshot()

    response = operator_client.get(f"{QUARANTINE}{run.id}/restore/")

    assert response.status_code == 200
    assert "Yes, restore" in response.content.decode()
    assert snapshot() == before


def test_a_confirmed_restore_puts_the_rows_back_records_who_and_logs_it(operator_client, operator, run):
    assert quarantined() == {"ML-901", "ML-902"}

    response = operator_client.post(f"{QUARANTINE}{run.id}/restore/", follow=True)

    assert messages_of(response) == [page.RESTORED.format(done="2 submissions", run=run.id)]
    assert quarantined() == set()
    run.refresh_from_db()
    assert run.restored_at is not None
    assert run.restored_origin == f"request:POST {QUARANTINE}{run.id}/restore/"
    restored = Submission.history.filter(
        history_change_reason=f"Restored by deployguard: undoing run {run.id}"
    )
    assert restored.count() == 2
    assert set(restored.values_list("history_user", flat=True)) == {operator.pk}
    entry = LogEntry.objects.get(object_id=run.id)
    assert (entry.user, entry.action_flag) == (operator, CHANGE)


def test_restoring_the_same_run_twice_from_two_tabs_restores_once_and_says_so(operator_client, run):
    first_tab = operator_client.get(f"{QUARANTINE}{run.id}/restore/")
    second_tab = operator_client.get(f"{QUARANTINE}{run.id}/restore/")
    assert first_tab.status_code == second_tab.status_code == 200

    operator_client.post(f"{QUARANTINE}{run.id}/restore/", follow=True)
    history = Submission.history.count()
    again = operator_client.post(f"{QUARANTINE}{run.id}/restore/", follow=True)

    [message] = messages_of(again)
    assert message.startswith(f"Run {run.id} was already restored at ")
    assert Submission.history.count() == history
    assert LogEntry.objects.filter(object_id=run.id).count() == 1


def test_a_restore_is_refused_in_deploy_mode_with_the_admin_s_503(operator_client, run, fast_switch):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    before = snapshot()

    page_body = operator_client.get(f"{QUARANTINE}{run.id}/").content.decode()
    response = operator_client.post(f"{QUARANTINE}{run.id}/restore/")

    assert 'id="restore-run"' not in page_body
    assert 'disabled aria-describedby="restore-paused"' in page_body
    assert response.status_code == 503
    assert snapshot() == before
    assert quarantined() == {"ML-901", "ML-902"}


def test_a_viewer_sees_runs_but_no_restore_and_gets_403_from_the_restore_url(viewer_client, run):
    body = viewer_client.get(f"{QUARANTINE}{run.id}/").content.decode()

    assert 'id="restore-run"' not in body
    assert viewer_client.get(f"{QUARANTINE}{run.id}/restore/").status_code == 403
    assert viewer_client.post(f"{QUARANTINE}{run.id}/restore/").status_code == 403
    assert quarantined() == {"ML-901", "ML-902"}


def test_staff_without_operations_permissions_get_403_everywhere(staff_client, run):
    assert staff_client.get(QUARANTINE).status_code == 403
    assert staff_client.get(f"{QUARANTINE}{run.id}/").status_code == 403
    assert staff_client.post(f"{QUARANTINE}{run.id}/restore/").status_code == 403
    assert quarantined() == {"ML-901", "ML-902"}


def test_a_restore_without_a_csrf_token_is_refused(operator, run):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    assert client.post(f"{QUARANTINE}{run.id}/restore/").status_code == 403
    assert quarantined() == {"ML-901", "ML-902"}


def test_an_unknown_run_redirects_with_a_message_not_a_500(operator_client):
    for url in (f"{QUARANTINE}no-such-run/", f"{QUARANTINE}no-such-run/restore/"):
        assert operator_client.get(url).status_code == 302
    assert operator_client.post(f"{QUARANTINE}no-such-run/restore/").status_code == 302


@pytest.mark.postgresql
def test_two_operators_restoring_the_same_run_at_the_same_moment_restore_it_once(transactional_db, operator):
    SubmissionFactory(actor=SuperuserFactory(), title="Interoperable widgets")
    raw_insert_submission("ML-901", submitted_by="Test User")
    run = scrub.quarantine(scrub.select_rows(default_registry.select()))
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(operator)
    ready = threading.Barrier(2)
    statuses: list[int] = []

    def restore(client: Client) -> None:
        try:
            ready.wait(timeout=60)
            statuses.append(client.post(f"{QUARANTINE}{run.id}/restore/").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=restore, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert statuses == [302, 302], statuses
    # Each operator's next page shows the message their restore left (read one after the other:
    # the test client's captured contexts are shared between threads).
    answers = [
        [str(m) for m in client.get(f"{QUARANTINE}{run.id}/").context["messages"]] for client in clients
    ]
    done = [a for a in answers if a == [page.RESTORED.format(done="1 submission", run=run.id)]]
    refused = [
        a for a in answers if len(a) == 1 and a[0].startswith(f"Run {run.id} was already restored at ")
    ]
    assert (len(done), len(refused)) == (1, 1), answers
    restored = Submission.history.filter(
        history_change_reason=f"Restored by deployguard: undoing run {run.id}"
    )
    assert restored.count() == 1
    assert LogEntry.objects.filter(object_id=run.id).count() == 1
