"""The deploy mode page: the state in human terms, the switch with a confirmation, who may use it."""

from __future__ import annotations

import pytest
from django.db import DatabaseError
from django.test import Client

from deployguard import state
from deployguard.admin import deploy_mode as page
from deployguard.deploy.lock import DeployLock
from deployguard.exceptions import DrainTimeout
from deployguard.models import DeployModeState, DeployRecord
from deployguard.views import SWITCH_FAILED
from tests.deployguard.admin_support import DEPLOY_MODE, SWITCH_OFF, SWITCH_ON, messages_of
from tests.factories import DeployRecordFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_switch")]

ON = {"reason": "Release 2026.11", "expected_minutes": "10"}
CONFIRMED_ON = {**ON, "confirmed": "yes"}


def fingerprint_of(client: Client) -> str:
    body = client.get(SWITCH_OFF).content.decode()
    return body.split('name="fingerprint" value="')[1].split('"')[0]


def test_the_page_says_who_turned_deploy_mode_on_why_since_when_and_until_when_in_human_terms(
    operator_client,
):
    status = state.enable(
        reason="Release 42", changed_by="ops@deploy-host", deploy_id="d-42", expected_minutes=10
    )

    body = operator_client.get(DEPLOY_MODE).content.decode()

    assert (
        f"On since {status.since:%H:%M} UTC (just now), turned on by ops@deploy-host. Reason: Release 42. "
        "Deploy d-42. Expected to end in about 10 minutes" in body
    )
    assert status.since.isoformat(timespec="seconds") not in body


def test_switching_on_shows_a_confirmation_first_and_changes_nothing_until_it_is_confirmed(operator_client):
    response = operator_client.post(SWITCH_ON, ON, follow=True)

    assert response.status_code == 200
    assert "Yes, turn deploy mode on" in response.content.decode()
    assert state.current().enabled is False
    assert DeployModeState.history.count() == 0


def test_a_confirmed_switch_turns_deploy_mode_on_naming_the_admin_and_the_reason(operator_client, operator):
    response = operator_client.post(SWITCH_ON, CONFIRMED_ON, follow=True)

    assert response.redirect_chain == [(DEPLOY_MODE, 302)]
    assert messages_of(response) == [page.SWITCHED_ON]
    status = state.current()
    assert status.enabled and status.reason == "Release 2026.11"
    assert status.changed_by == "operator via the admin from 127.0.0.1"
    assert status.expected_end is not None
    record = DeployModeState.history.get(enabled=True)
    assert record.history_user == operator
    assert record.history_change_reason == "Deploy mode on: Release 2026.11"


def test_switching_on_requires_a_reason_and_changes_nothing_without_one(operator_client):
    response = operator_client.post(
        SWITCH_ON, {"reason": "   ", "expected_minutes": "10", "confirmed": "yes"}
    )

    assert response.status_code == 400
    assert "Give a reason: it is shown to everyone whose change is refused." in response.content.decode()
    assert state.current().enabled is False


@pytest.mark.parametrize("minutes", ["0", "-5", "1e9", "ten", str(state.MAX_EXPECTED_MINUTES + 1)])
def test_an_impossible_expected_duration_is_refused(operator_client, minutes):
    response = operator_client.post(SWITCH_ON, {**CONFIRMED_ON, "expected_minutes": minutes}, follow=True)

    assert response.status_code == 400
    assert state.current().enabled is False


def test_a_double_submitted_switch_turns_deploy_mode_on_once(operator_client):
    first = operator_client.post(SWITCH_ON, CONFIRMED_ON, follow=True)
    second = operator_client.post(SWITCH_ON, {**CONFIRMED_ON, "reason": "Another release"}, follow=True)

    assert messages_of(first) == [page.SWITCHED_ON]
    [message] = messages_of(second)
    assert message.startswith("Deploy mode was already on, so nothing changed: On since ")
    assert state.current().reason == "Release 2026.11"
    assert DeployModeState.history.filter(enabled=True).count() == 1


def test_switching_off_is_confirmed_then_done_from_the_admin_while_deploy_mode_refuses_other_posts(
    operator_client,
):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    assert operator_client.post("/admin/auth/group/add/", {"name": "x"}).status_code == 503

    confirmation = operator_client.get(SWITCH_OFF)
    assert "Yes, turn deploy mode off" in confirmation.content.decode()
    response = operator_client.post(SWITCH_OFF, {"fingerprint": fingerprint_of(operator_client)}, follow=True)

    assert response.redirect_chain == [(DEPLOY_MODE, 302)]
    assert messages_of(response) == [page.SWITCHED_OFF]
    assert state.current().enabled is False
    latest = DeployModeState.history.order_by("-history_id").first()
    assert latest.enabled is False
    assert latest.history_change_reason == "Deploy mode off: Turned off in the admin by operator"


def test_switching_off_refuses_a_confirmation_given_for_an_earlier_deploy_mode(operator_client):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    stale = fingerprint_of(operator_client)
    state.disable(changed_by="ops@deploy-host")
    state.enable(reason="Release 43", changed_by="someone@else", deploy_id="d-43")

    response = operator_client.post(SWITCH_OFF, {"fingerprint": stale}, follow=True)

    [message] = messages_of(response)
    assert message.startswith("Deploy mode changed since you opened the confirmation (now: On since ")
    assert state.current().reason == "Release 43"


def test_switching_off_twice_reports_the_second_as_nothing_to_do(operator_client):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    token = fingerprint_of(operator_client)

    operator_client.post(SWITCH_OFF, {"fingerprint": token}, follow=True)
    again = operator_client.post(SWITCH_OFF, {"fingerprint": token}, follow=True)

    assert messages_of(again) == [page.ALREADY_OFF]
    assert DeployModeState.history.filter(enabled=False, history_type="~").count() == 1


def test_neither_switch_works_while_a_deploy_record_is_running(operator_client):
    running = DeployRecordFactory(status=DeployRecord.Status.RUNNING, finished_at=None, exit_status=None)
    state.enable(reason="deploy_safe", changed_by="ci@build-7", deploy_id=running.deploy_id)
    token = fingerprint_of(operator_client)

    off = operator_client.post(SWITCH_OFF, {"fingerprint": token}, follow=True)

    [message] = messages_of(off)
    assert message.startswith(f"A deploy is running (deploy {running.deploy_id}, started ")
    assert message.endswith(page.DEPLOY_RUNNING.split("): ", 1)[1])
    assert state.current().enabled is True
    page_body = operator_client.get(DEPLOY_MODE).content.decode()
    assert 'id="deploy-running"' in page_body
    assert 'id="switch-off"' not in page_body


def test_neither_switch_works_while_a_deploy_holds_the_deploy_lock(operator_client, monkeypatch):
    # A deploy in its pre-checks has no record yet: only its lock says it runs.
    monkeypatch.setattr(DeployLock, "holder", lambda self: "deploy d-9, started 2026-01-01 10:00:00 by ci")

    response = operator_client.post(SWITCH_ON, CONFIRMED_ON, follow=True)

    assert messages_of(response) == [
        page.DEPLOY_RUNNING.format(deploy="deploy d-9, started 2026-01-01 10:00:00 by ci")
    ]
    assert state.current().enabled is False


def test_a_drain_that_times_out_is_reported_not_a_500(operator_client, monkeypatch):
    def times_out(timeout=None):
        raise DrainTimeout("A transaction that wrote before deploy mode went on was still open after 30s.")

    monkeypatch.setattr(state, "drain_in_flight_writes", times_out)

    response = operator_client.post(SWITCH_ON, CONFIRMED_ON, follow=True)

    assert messages_of(response) == [
        page.DRAIN_TIMED_OUT.format(
            error="A transaction that wrote before deploy mode went on was still open after 30s."
        )
    ]
    assert state.current().enabled is True


def test_deploy_mode_forced_by_the_environment_cannot_be_switched_off_here(operator_client, monkeypatch):
    monkeypatch.setenv("DEPLOYMENT_MODE", "true")
    state.clear_cache()

    response = operator_client.post(SWITCH_OFF, {"fingerprint": "x"}, follow=True)

    [message] = messages_of(response)
    assert message.startswith("Deploy mode is forced on for this server (It is forced on for this process by")


def test_a_viewer_sees_the_state_but_no_switch_and_gets_403_from_every_switch_url(viewer_client):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")

    body = viewer_client.get(DEPLOY_MODE).content.decode()
    assert "Release 42" in body
    assert 'id="switch-off"' not in body
    assert viewer_client.get(SWITCH_OFF).status_code == 403
    assert viewer_client.post(SWITCH_OFF, {"fingerprint": "anything"}).status_code == 403
    state.disable(changed_by="ops@deploy-host")
    assert 'id="switch-on-form"' not in viewer_client.get(DEPLOY_MODE).content.decode()
    assert viewer_client.post(SWITCH_ON, CONFIRMED_ON).status_code == 403
    assert state.current().enabled is False


def test_staff_without_operations_permissions_get_403_from_the_page_and_every_switch(staff_client):
    assert staff_client.get(DEPLOY_MODE).status_code == 403
    assert staff_client.post(SWITCH_ON, CONFIRMED_ON).status_code == 403
    assert staff_client.get(SWITCH_OFF).status_code == 403
    assert staff_client.post(SWITCH_OFF, {}).status_code == 403
    assert "Operations" not in staff_client.get("/admin/").content.decode()
    assert state.current().enabled is False


@pytest.mark.parametrize("url", [SWITCH_ON, SWITCH_OFF])
def test_a_switch_post_without_a_csrf_token_is_refused_even_while_deploy_mode_is_on(operator, url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    state.enable(reason="Release 42", changed_by="ops@deploy-host")

    response = client.post(url, CONFIRMED_ON)

    assert response.status_code == 403
    assert b"CSRF verification failed" in response.content
    assert state.current().reason == "Release 42"


def test_markup_in_a_reason_is_shown_as_text_on_the_page_and_the_banner(operator_client):
    operator_client.post(SWITCH_ON, {**CONFIRMED_ON, "reason": '<script>alert("x")</script><b>bold</b>'})

    body = operator_client.get(DEPLOY_MODE).content.decode()

    assert '<script>alert("x")</script>' not in body
    assert "<b>bold</b>" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in body


def test_the_history_lists_every_switch_newest_first(operator_client):
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    state.disable(changed_by="ops@deploy-host", reason="Deploy finished")

    body = operator_client.get(DEPLOY_MODE).content.decode()
    table = body.split('id="deploy-mode-history"')[1]

    assert table.index("Deploy mode off: Deploy finished") < table.index("Deploy mode on: Release 42")


def test_a_switch_the_database_refuses_is_an_error_message_naming_the_owners_command(
    operator_client, monkeypatch
):
    def refused(**kwargs):
        raise DatabaseError("permission denied for function deployguard_freeze")

    monkeypatch.setattr(state, "switch_on", refused)

    response = operator_client.post(SWITCH_ON, CONFIRMED_ON, follow=True)

    assert messages_of(response) == [
        SWITCH_FAILED.format(error="permission denied for function deployguard_freeze")
    ]
    assert not state.current().enabled
