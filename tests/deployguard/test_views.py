"""The /_deploy/ endpoints: health, status, and the token-protected switch."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, transaction
from django.urls import reverse

import deployguard
from deployguard import state
from deployguard.views import ENDPOINT_DISABLED, STATUS_PUBLIC, SWITCH_FAILED, TOKEN_REQUIRED, TOKEN_WRONG

TOKEN = "t" * 40


@pytest.fixture
def token(settings, fast_switch, db):
    settings.DEPLOYGUARD_TOKEN = TOKEN
    return TOKEN


def switch(client, body, token=TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(reverse("deployguard:mode"), body, content_type="application/json", **headers)


def test_health_reports_database_migrations_and_deploy_mode(client, db):
    response = client.get(reverse("deployguard:health"))
    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "migrations": "applied",
        "deploy_mode": False,
        "freeze": "off",
        "freeze_agrees": True,
        "status": "ok",
    }


def test_health_stays_200_in_deploy_mode_and_says_so(client, deploy_mode_on):
    response = client.get(reverse("deployguard:health"))
    assert response.status_code == 200
    assert response.json()["deploy_mode"] is True
    # Switched on inside the test's transaction, where the drain cannot freeze the database.
    assert (response.json()["freeze"], response.json()["freeze_agrees"]) == ("off", False)


def test_status_and_health_say_when_the_database_freeze_agrees_with_the_state(
    client, transactional_db, fast_switch, staff_client
):
    state.switch_on(reason="Release 42", changed_by="ops@deploy-host")
    try:
        assert client.get(reverse("deployguard:health")).json()["freeze"] == "on"
        body = staff_client.get(reverse("deployguard:status")).json()
        assert (body["enabled"], body["freeze"], body["freeze_agrees"]) == (True, "on", True)
        assert body["freeze_detail"] == "The database freeze is on, as the state says."
    finally:
        state.disable(changed_by="pytest")
    body = staff_client.get(reverse("deployguard:status")).json()
    assert (body["enabled"], body["freeze"], body["freeze_agrees"]) == (False, "off", True)


@pytest.fixture
def staff_client(client, editor):
    client.force_login(editor)  # before deploy mode: logging in writes last_login
    return client


def test_status_says_who_turned_deploy_mode_on_why_and_when_to_staff(staff_client, deploy_mode_on):
    client = staff_client
    body = client.get(reverse("deployguard:status")).json()
    assert body["enabled"] is True
    assert body["reason"] == "Release 42"
    assert body["who"] == "ops@deploy-host"
    assert body["deploy_id"] == "d-42"
    assert body["since"] == deploy_mode_on.since.isoformat()


def test_status_names_who_switched_for_holders_of_the_token(client, deploy_mode_on, settings):
    settings.DEPLOYGUARD_TOKEN = TOKEN
    body = client.get(reverse("deployguard:status"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert body["who"] == "ops@deploy-host"


@pytest.mark.parametrize("authorization", ["", "Bearer wrong", f"Basic {TOKEN}"])
def test_status_tells_anyone_else_whether_and_why_but_not_who(
    client, deploy_mode_on, settings, authorization
):
    settings.DEPLOYGUARD_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get(reverse("deployguard:status"), **headers)
    assert response.status_code == 200
    assert response.json() == {
        "enabled": True,
        "source": "database",
        "reason": "Release 42",
        "since": deploy_mode_on.since.isoformat(),
        "deploy_id": "d-42",
        "expected_end": deploy_mode_on.expected_end.isoformat(),
        # Switched on inside the test's transaction, where the drain cannot freeze the database.
        "freeze": "off",
        "freeze_agrees": False,
        "detail": STATUS_PUBLIC,
    }
    assert "ops@deploy-host" not in response.content.decode()


def test_the_switch_is_disabled_without_a_configured_token(client, db, settings):
    settings.DEPLOYGUARD_TOKEN = ""
    response = switch(client, {"mode": "on", "reason": "x"}, token="anything")
    assert response.status_code == 404
    assert response.json() == {"error": ENDPOINT_DISABLED}
    assert state.current().enabled is False


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [(None, 401, TOKEN_REQUIRED), ("Basic abc", 401, TOKEN_REQUIRED), ("Bearer wrong", 403, TOKEN_WRONG)],
)
def test_the_switch_refuses_requests_without_the_token(client, token, authorization, status, message):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.post(
        reverse("deployguard:mode"), {"mode": "on", "reason": "x"}, content_type="application/json", **headers
    )
    assert response.status_code == status
    assert response.json() == {"error": message}
    assert state.current().enabled is False


def test_the_switch_turns_deploy_mode_on_and_off_with_the_token(client, token):
    response = switch(client, {"mode": "on", "reason": "CI release 7", "expected_minutes": 5, "by": "ci"})
    assert response.status_code == 200, response.content
    assert response.json()["enabled"] is True
    assert response.json()["who"].startswith("ci via POST /_deploy/mode")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        Group.objects.create(name="late")
    assert client.post("/admin/auth/group/add/").status_code == 503
    again = switch(client, {"mode": "on", "reason": "second pipeline"})
    assert again.status_code == 409
    response = switch(client, {"mode": "off"})
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    Group.objects.create(name="after")
    assert Group.objects.count() == 1


def test_the_switch_needs_a_mode_and_a_reason(client, token):
    assert switch(client, {"mode": "sideways"}).status_code == 400
    assert switch(client, {"mode": "on", "reason": "  "}).status_code == 400
    assert state.current().enabled is False


@pytest.mark.parametrize(
    "body",
    [
        '{"mode": "on", "reason": "r", "expected_minutes": [1]}',
        '{"mode": "on", "reason": "r", "expected_minutes": 1e400}',
        '{"mode": "on", "reason": "r", "expected_minutes": 1e12}',
        '{"mode": "on", "reason": "r", "expected_minutes": -5}',
        '{"mode": "on", "reason": "r", "expected_minutes": true}',
        '{"mode": "on", "reason": "r", "expected_minutes": "soon"}',
        '{"mode": "on"' + ', "x": [' * 5000 + "]" * 5000 + "}",
        "[1, 2]",
        "{not json",
    ],
    ids=["list", "overflow", "too-long", "negative", "bool", "word", "nested", "array", "not-json"],
)
def test_malformed_bodies_get_400_and_change_nothing(client, token, body):
    response = switch(client, body)

    assert response.status_code == 400
    assert response.json()["error"].startswith('Send JSON such as {"mode": "on"')
    assert state.current().enabled is False


def test_the_switch_is_not_csrf_protected_because_the_token_authenticates(token, db):
    from django.test import Client

    response = switch(Client(enforce_csrf_checks=True), {"mode": "on", "reason": "CI"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"mode": "on", "reason": None}, '"reason" is null: send why deploy mode goes on'),
        ({"mode": "on"}, '"reason" is required with "mode": "on"'),
        ({"mode": "on", "reason": 42}, '"reason" must be a string, not a number'),
        ({"mode": "on", "reason": ["r"]}, '"reason" must be a string, not a list'),
        ({"mode": "on", "reason": "\t "}, '"reason" must be one line of printable text: it contains U+0009'),
        ({"mode": "on", "reason": ""}, '"reason" is blank: send why deploy mode goes on'),
        ({"mode": "on", "reason": "a\nb"}, "it contains U+000A"),
        ({"mode": "on", "reason": "a\u2028b"}, "it contains U+2028 (LINE SEPARATOR)"),
        ({"mode": "on", "reason": "a\x85b"}, "it contains U+0085"),
        ({"mode": "on", "reason": "\x1b[2Kr"}, "it contains U+001B"),
        ({"mode": "on", "reason": "r", "by": None}, '"by" is null: send who switches'),
        ({"mode": "on", "reason": "r", "by": "ci\r\nx"}, '"by" must be one line of printable text'),
        ({"mode": "on", "reason": "r", "deploy_id": 7}, '"deploy_id" must be a string, not a number'),
        ({"mode": "on", "reason": "r", "expected_minutes": None}, '"expected_minutes" is null'),
        ({"mode": "on", "reason": "r", "expected_minutes": "10"}, '"expected_minutes" must be a number'),
        ({"mode": "on", "reason": "r", "force": True}, 'unknown field "force": with "mode": "on" send only'),
        ({"mode": "off", "deploy_id": "d-1"}, 'unknown field "deploy_id": with "mode": "off" send only'),
        ({"mode": "off", "reason": None}, '"reason" is null'),
        ({"mode": None, "reason": "r"}, '"mode" must be "on" or "off"'),
        ({"mode": ["on"], "reason": "r"}, '"mode" must be "on" or "off"'),
    ],
    ids=lambda value: None if isinstance(value, dict) else value[:24],
)
def test_the_switch_validates_its_body_as_strictly_as_the_command(client, token, body, problem):
    response = switch(client, body)

    assert response.status_code == 400, response.content
    assert problem in response.json()["error"]
    assert response.json()["error"].startswith('Send JSON such as {"mode": "on"')
    state.clear_cache()
    assert state.current().enabled is False


def test_a_refused_switch_off_leaves_deploy_mode_on(client, token):
    assert switch(client, {"mode": "on", "reason": "release 9"}).status_code == 200

    assert switch(client, {"mode": "off", "reason": None}).status_code == 400
    state.clear_cache()
    assert state.current().enabled is True
    assert state.current().reason == "release 9"


def test_the_switch_takes_a_form_body_with_the_same_rules(client, token):
    url = reverse("deployguard:mode")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}

    refused = client.post(url, {"mode": "on", "reason": "a\nb"}, **headers)
    assert refused.status_code == 400
    assert "it contains U+000A" in refused.json()["error"]
    accepted = client.post(url, {"mode": "on", "reason": "release 8", "expected_minutes": "5"}, **headers)
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["reason"] == "release 8"


@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_switch_the_database_refuses_is_a_503_that_says_to_use_the_owners_command(
    client, token, monkeypatch, mode
):
    # As the site's least-privileged role would be refused installing or lifting the freeze.
    def refused(**kwargs):
        raise DatabaseError("permission denied for table documents_submission")

    monkeypatch.setattr(state, f"switch_{mode}", refused)

    response = switch(client, {"mode": mode, "reason": "release 8"})

    assert response.status_code == 503
    assert response.json()["error"] == SWITCH_FAILED.format(
        error="permission denied for table documents_submission"
    )
    assert "enabled" in response.json()
