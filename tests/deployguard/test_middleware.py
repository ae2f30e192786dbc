"""The HTTP layer: unsafe requests get a 503 in deploy mode, safe ones pass with no query."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deployguard import state
from deployguard.middleware import REFUSED_REQUEST, DeployModeMiddleware
from documents import services
from documents.exceptions import DeployModeRefused
from documents.models import Submission
from tests.deployguard.support import snapshot
from tests.factories import SubmissionFactory

MIDDLEWARE_PATH = "deployguard.middleware.DeployModeMiddleware"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_unsafe_requests_get_503_with_retry_after_in_deploy_mode(client, deploy_mode_on, method):
    response = getattr(client, method)("/any/view/at/all/")
    assert response.status_code == 503
    assert response["X-Deploy-Mode"] == "on"
    assert 590 <= int(response["Retry-After"]) <= 600  # the expected end, 10 minutes away
    assert REFUSED_REQUEST in response.content.decode()


def test_browsers_get_an_html_page_in_the_admin_look(client, deploy_mode_on):
    response = client.post("/admin/auth/group/add/", {"name": "x"}, HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "admin/css/base.css" in body
    assert "ops@deploy-host" not in body  # anyone may see this page: not who switched
    assert "On since " in body
    assert "Release 42" in body
    assert "Try again in about 10 minutes." in body


def test_api_clients_get_json(client, deploy_mode_on):
    response = client.post(
        "/api/things/", {"a": 1}, content_type="application/json", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 503
    assert response.json()["error"] == "deploy_mode"
    assert response.json()["detail"] == REFUSED_REQUEST
    assert response.json()["deploy_mode"]["reason"] == "Release 42"
    assert response.json()["retry_after"] == int(response["Retry-After"])
    # The refusal cannot know who asks (it answers before sessions load): no account, no address.
    assert "who" not in response.json()["deploy_mode"]
    assert "ops@deploy-host" not in response.content.decode()


def test_retry_after_falls_back_to_the_setting_when_the_end_is_unknown(client, db, settings):
    settings.DEPLOYGUARD_RETRY_AFTER = 45
    state.enable(reason="Release 42", changed_by="ops@host")
    assert client.post("/x/")["Retry-After"] == "45"


@pytest.mark.parametrize("method", ["get", "head", "options", "trace"])
def test_safe_methods_pass_in_deploy_mode_with_no_query_from_the_middleware(client, deploy_mode_on, method):
    state.clear_cache()  # nothing cached: still no query for the state
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)("/nowhere/")
    assert response.status_code in (404, 405)
    assert response.get("X-Deploy-Mode") is None
    assert len(queries) == 0


def test_admin_pages_keep_working_and_show_the_banner_in_deploy_mode(admin_client, db):
    SubmissionFactory()
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    for url in ("/admin/", "/admin/documents/submission/", "/admin/auth/group/"):
        response = admin_client.get(url)
        assert response.status_code == 200
        body = response.content.decode()
        assert 'id="deploy-mode-banner"' in body
        assert "Deploy mode is on" in body
        assert "ops@deploy-host" in body


def test_the_admin_shows_no_banner_while_deploy_mode_is_off(admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert "deploy-mode-banner" not in response.content.decode()


def test_an_admin_save_is_refused_with_the_friendly_page_and_changes_nothing(admin_client, db):
    admin_client.get("/admin/")
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    before = snapshot()
    response = admin_client.post("/admin/auth/group/add/", {"name": "during the deploy"})
    assert response.status_code == 503
    assert snapshot() == before


def test_the_admin_publish_action_is_refused_in_deploy_mode(admin_client, superuser, db):
    submission = SubmissionFactory(status=Submission.Status.APPROVED, actor=superuser)
    state.enable(reason="Release 42", changed_by="ops@host")
    before = snapshot()
    response = admin_client.post(
        reverse("admin:documents_submission_changelist"),
        {"action": "publish_selected", "_selected_action": [submission.pk], "post": "yes", "reason": "Go"},
    )
    assert response.status_code == 503
    assert snapshot() == before
    submission.refresh_from_db()
    assert submission.status == Submission.Status.APPROVED


def test_a_history_revert_post_is_refused_in_deploy_mode(admin_client, superuser, db):
    submission = SubmissionFactory(actor=superuser)
    record = submission.history.earliest()
    state.enable(reason="Release 42", changed_by="ops@host")
    before = snapshot()
    url = reverse("admin:documents_submission_simple_history", args=[submission.pk, record.history_id])
    response = admin_client.post(url, {"title": "Reverted", "ml_number": submission.ml_number})
    assert response.status_code == 503
    assert snapshot() == before


def test_the_publish_service_refuses_in_deploy_mode_with_its_own_message(superuser, db):
    submission = SubmissionFactory(status=Submission.Status.APPROVED, actor=superuser)
    state.enable(reason="Release 42", changed_by="ops@host")
    before = snapshot()
    with pytest.raises(DeployModeRefused) as refused:
        services.publish_submission(actor=superuser, submission=submission, reason="Go")
    assert str(refused.value).startswith(
        f"Publishing {submission.ml_number} is paused while the site is being deployed; nothing was changed."
    )
    assert "Release 42" in str(refused.value)
    assert snapshot() == before


def test_a_get_view_that_writes_gets_the_503_page_not_a_500(client, deploy_mode_on, settings):
    # The middleware lets GET through; the guard refuses the write; the middleware answers.
    middleware = DeployModeMiddleware(lambda request: Group.objects.create(name="from a GET"))
    from django.test import RequestFactory

    request = RequestFactory().get("/writes-on-get/")
    try:
        with transaction.atomic():
            middleware(request)
    except Exception as error:
        response = middleware.process_exception(request, error)
    assert response is not None and response.status_code == 503
    assert Group.objects.count() == 0


def test_an_unsafe_request_while_off_costs_at_most_one_query(db, settings):
    state.clear_cache()
    state.current()  # the table check a process makes once, at its first read
    baseline_middleware = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE_PATH]
    settings.MIDDLEWARE = baseline_middleware
    with CaptureQueriesContext(connection) as baseline:
        Client().post("/nowhere/")
    settings.MIDDLEWARE = [MIDDLEWARE_PATH, *baseline_middleware]
    guarded = Client()
    state.clear_cache()
    with CaptureQueriesContext(connection) as cold:
        guarded.post("/nowhere/")
    with CaptureQueriesContext(connection) as warm:
        guarded.post("/nowhere/")
    assert len(cold) - len(baseline) == 1
    assert len(warm) == len(baseline)


def test_the_middleware_refuses_unusable_settings_at_start_up(settings):
    settings.DEPLOYGUARD_RETRY_AFTER = "soon"
    with pytest.raises(ImproperlyConfigured, match="DEPLOYGUARD_RETRY_AFTER='soon'"):
        DeployModeMiddleware(lambda request: None)
