"""Guessing the operations pages' URLs: without the permissions, nothing is shown and nothing changes."""

from __future__ import annotations

import pytest
from django.test import Client

from deployguard import scrub, state
from deployguard.integrity import default_registry
from deployguard.models import DeployModeState, DeployRecord
from deployguard.models_integrity import ScrubRun
from deployguard.models_operations import IntegrityRun
from tests.deployguard.support import snapshot
from tests.documents.fakes import raw_insert_submission
from tests.factories import DeployRecordFactory, SubmissionFactory

pytestmark = pytest.mark.django_db

OPS = "/admin/deployguard/"


@pytest.fixture
def targets(superuser) -> dict[str, object]:
    SubmissionFactory(actor=superuser)
    raw_insert_submission("ML-901", submitted_by="Test User")
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    state.disable(changed_by="ops@deploy-host")
    return {
        "run": scrub.quarantine(scrub.select_rows(default_registry.select())).id,
        "deploy": DeployRecordFactory().pk,
    }


def guesses(targets: dict[str, object]) -> list[tuple[str, str, dict[str, str]]]:
    run, deploy = targets["run"], targets["deploy"]
    on = {"reason": "guessed", "expected_minutes": "5", "confirmed": "yes"}
    return [
        ("GET", OPS, {}),
        *[
            ("GET", f"{OPS}{page}/", {})
            for page in ("deploymodestate", "deployrecord", "integrityrun", "scrubrun")
        ],
        ("GET", f"{OPS}operations/", {}),
        ("POST", f"{OPS}deploymodestate/on/", on),
        ("GET", f"{OPS}deploymodestate/off/", {}),
        ("POST", f"{OPS}deploymodestate/off/", {"fingerprint": "guessed"}),
        ("POST", f"{OPS}deploymodestate/1/change/", {"enabled": "on", "reason": "guessed"}),
        ("POST", f"{OPS}deploymodestate/add/", {"enabled": "on"}),
        ("GET", f"{OPS}deployrecord/{deploy}/change/", {}),
        ("POST", f"{OPS}deployrecord/{deploy}/change/", {"status": "succeeded"}),
        ("POST", f"{OPS}deployrecord/{deploy}/delete/", {"post": "yes"}),
        ("GET", f"{OPS}deployrecord/{deploy}/history/", {}),
        ("POST", f"{OPS}deployrecord/add/", {"deploy_id": "guessed"}),
        ("POST", f"{OPS}integrityrun/recount/", {}),
        ("POST", f"{OPS}integrityrun/1/delete/", {"post": "yes"}),
        ("GET", f"{OPS}scrubrun/{run}/", {}),
        ("GET", f"{OPS}scrubrun/{run}/restore/", {}),
        ("POST", f"{OPS}scrubrun/{run}/restore/", {}),
        ("POST", f"{OPS}scrubrun/{run}/delete/", {"post": "yes"}),
        ("POST", f"{OPS}operations/1/change/", {}),
        ("POST", f"{OPS}operations/add/", {}),
    ]


def bookkeeping() -> tuple[int, ...]:
    return (
        DeployModeState.history.count(),
        DeployRecord.objects.count(),
        IntegrityRun.objects.count(),
        ScrubRun.objects.filter(restored_at__isnull=False).count(),
    )


def test_staff_without_operations_permissions_get_403_or_404_from_every_guessed_url(staff_client, targets):
    before, counts = snapshot(), bookkeeping()

    answers = {(method, url): getattr(staff_client, method.lower())(url, data).status_code
               for method, url, data in guesses(targets)}  # fmt: skip

    assert {key: code for key, code in answers.items() if code not in (403, 404)} == {}
    assert snapshot() == before
    assert bookkeeping() == counts
    assert state.current().enabled is False


def test_anonymous_visitors_are_sent_to_the_login_page_from_every_guessed_url(client, targets):
    for method, url, data in guesses(targets):
        response = getattr(client, method.lower())(url, data)
        assert response.status_code in (302, 404), (method, url, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith("/admin/login/"), (method, url)
    assert IntegrityRun.objects.count() == 0


def test_even_a_superuser_cannot_add_change_or_delete_the_operations_records(admin_client, targets):
    counts = bookkeeping()

    for method, url, data in guesses(targets):
        if method == "POST" and url.endswith(("/delete/", "/add/", "/change/")):
            assert admin_client.post(url, data).status_code in (403, 404, 405), url

    assert bookkeeping() == counts


def test_markup_in_a_reason_is_text_on_the_503_the_login_page_and_the_activity_chart(client, admin_client):
    reason = '<img src=x onerror="alert(1)">'
    state.enable(reason=reason, changed_by="<b>ops</b>")

    pages = [
        client.post("/admin/auth/group/add/", {"name": "x"}, HTTP_ACCEPT="text/html").content.decode(),
        client.post("/elsewhere/", HTTP_ACCEPT="text/html").content.decode(),
        client.get("/admin/login/").content.decode(),
        admin_client.get(f"{OPS}operations/").content.decode(),
        admin_client.get(f"{OPS}deploymodestate/").content.decode(),
    ]

    for body in pages:
        assert reason not in body
        assert "<b>ops</b>" not in body
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in pages[3]


def test_the_back_link_of_a_refusal_never_points_to_another_site(client, settings):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    state.enable(reason="Release 42", changed_by="ops@deploy-host")

    body = Client().post("/admin//evil.example/", HTTP_ACCEPT="text/html").content.decode()

    assert 'href="//' not in body
