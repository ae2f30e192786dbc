"""Deploy mode in the admin: forms and actions visibly paused, a refused save in the admin's frame,
logging in paused and why, nothing about who switched it for anonymous visitors, human times."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils.html import escape

from deployguard import middleware, state
from documents.models import Submission
from tests.deployguard.support import snapshot
from tests.factories import EditorFactory, SubmissionFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_switch")]

SUBMISSIONS = "/admin/documents/submission/"
WHO = "ops@deploy-host"


@pytest.fixture
def editor_client(db) -> Client:
    client = Client()
    client.force_login(EditorFactory(username="editor"))
    return client


@pytest.fixture
def on(db) -> state.DeployModeStatus:
    return state.enable(reason="Release 42", changed_by=WHO, expected_minutes=10)


def test_a_refused_save_is_a_503_inside_the_admin_frame_that_says_the_change_was_not_saved(
    editor_client, superuser
):
    submission = SubmissionFactory(actor=superuser, title="Original title")
    url = f"{SUBMISSIONS}{submission.pk}/change/"
    state.enable(reason="Release 42", changed_by=WHO, expected_minutes=10)
    before = snapshot()

    response = editor_client.post(url, {"title": "Typed during the deploy", "submitted_by": "Ada"})

    assert response.status_code == 503
    body = response.content.decode()
    assert escape(middleware.REFUSED_CHANGE) in body
    breadcrumbs = body.split('class="breadcrumbs"')[1].split("</div>")[0]
    assert '<a href="/admin/">Home</a>' in breadcrumbs
    assert '<a href="/admin/documents/">Documents</a>' in breadcrumbs
    assert f'<a href="{SUBMISSIONS}">Submissions</a>' in breadcrumbs
    assert "Change not saved" in breadcrumbs
    assert f'<a class="button" id="deploy-mode-back" href="{url}">Back to the page</a>' in body
    assert "admin/css/dark_mode.css" in body and "admin/js/theme.js" in body
    assert "Try again in about 10 minutes." in body
    assert WHO not in body
    assert snapshot() == before
    assert Submission.objects.get(pk=submission.pk).title == "Original title"


def test_the_refusal_page_costs_no_query_once_the_state_is_known(
    editor_client, on, django_assert_num_queries
):
    state.prime_cache(on)  # as this process has it cached for a second after reading it

    with django_assert_num_queries(0):
        response = editor_client.post(f"{SUBMISSIONS}add/", {"title": "x"})

    assert response.status_code == 503


def test_a_login_is_refused_in_the_admin_frame_saying_logging_in_is_paused_and_why(client, on):
    response = client.post("/admin/login/?next=/admin/", {"username": "editor", "password": "x"})

    assert response.status_code == 503
    body = response.content.decode()
    assert escape(middleware.LOGIN_PAUSED) in body
    assert "<title>Logging in is paused | " in body
    assert WHO not in body


def test_the_login_page_says_logging_in_is_paused_and_disables_the_form_without_naming_who(client, on):
    body = client.get("/admin/login/").content.decode()

    assert escape(middleware.LOGIN_PAUSED) in body
    assert '<fieldset class="deploy-paused" disabled aria-describedby="login-paused">' in body
    assert body.index("deploy-paused") < body.index('id="login-form"')
    assert "Release 42" in body
    assert WHO not in body
    assert "127.0.0.1" not in body


def test_a_change_form_is_disabled_with_the_reason_shown(editor_client, superuser):
    submission = SubmissionFactory(actor=superuser)
    state.enable(reason="Release 42", changed_by=WHO)

    body = editor_client.get(f"{SUBMISSIONS}{submission.pk}/change/").content.decode()

    assert middleware.SAVE_PAUSED in body
    assert body.count('<fieldset class="deploy-paused" disabled') >= 2  # the fields and the buttons
    form = body.split('id="submission_form"')[1]
    assert form.index('class="deploy-paused" disabled') < form.index('name="title"')
    assert form.index('class="deploy-paused" disabled') < form.index('name="_save"')


def test_changelist_actions_are_disabled_with_the_reason_shown(editor_client, superuser):
    SubmissionFactory(actor=superuser)
    state.enable(reason="Release 42", changed_by=WHO)

    body = editor_client.get(SUBMISSIONS).content.decode()

    actions = body.split('<div class="actions">')[1]
    assert actions.index('<fieldset class="deploy-paused" disabled') < actions.index('name="action"')
    assert middleware.ACTIONS_PAUSED in actions


def test_nothing_is_disabled_while_deploy_mode_is_off(editor_client, superuser):
    submission = SubmissionFactory(actor=superuser)

    for url in (SUBMISSIONS, f"{SUBMISSIONS}{submission.pk}/change/"):
        body = editor_client.get(url).content.decode()
        assert "deploy-paused" not in body
        assert "deploy-mode-banner" not in body
    assert "deploy-paused" not in Client().get("/admin/login/").content.decode()


def test_the_banner_names_who_switched_it_for_staff_in_human_times(editor_client, on):
    body = editor_client.get("/admin/").content.decode()

    banner = body.split('id="deploy-mode-banner"')[1].split("</ul>")[0]
    assert f"On since {on.since:%H:%M} UTC (just now), turned on by {WHO}. Reason: Release 42." in banner
    assert on.since.isoformat(timespec="seconds") not in banner
    assert "Deploy mode page" not in banner  # no operations permission: no link to a page it cannot open


def test_the_banner_links_operators_to_the_deploy_mode_page(admin_client, on):
    body = admin_client.get("/admin/").content.decode()

    assert '<a href="/admin/deployguard/deploymodestate/">Deploy mode page</a>' in body


def test_an_unsafe_request_outside_the_admin_gets_the_plain_page_in_human_times(client, on):
    response = client.post("/somewhere/else/", HTTP_ACCEPT="text/html")

    body = response.content.decode()
    assert response.status_code == 503
    assert "breadcrumbs" not in body
    assert middleware.REFUSED_REQUEST in body
    assert "Try again in about 10 minutes." in body
    assert WHO not in body


def test_a_read_only_page_says_nothing_about_saving(client, superuser):
    viewer = EditorFactory(username="viewer", permissions=("view_submission",))
    client.force_login(viewer)
    submission = SubmissionFactory(actor=superuser)
    state.enable(reason="Release 42", changed_by=WHO)

    body = client.get(f"{SUBMISSIONS}{submission.pk}/change/").content.decode()

    assert 'id="deploy-mode-banner"' in body
    assert middleware.SAVE_PAUSED not in body
