"""Load: gunicorn workers serving readers and writers while deploy mode is switched on and off."""

from __future__ import annotations

from deployguard import state
from deployguard.middleware import REFUSED_REQUEST
from deployguard.state import DeployModeStatus
from documents.models import Submission
from tests.reliability.rows import compare, row_hashes


def test_an_admin_write_that_races_the_switch_on_gets_503_not_500(admin_client, monkeypatch):
    """An admin write let through by the middleware just before deploy mode went on gets 503, not 500.

    What the load test caught: the middleware reads "off" (its cached state), the switch
    lands, and the submission service, asking again, refuses with its own exception, which
    the middleware did not know; the request ended as a 500.
    """
    reads = iter([DeployModeStatus(enabled=False, source="database")])
    on = DeployModeStatus(enabled=True, source="database", reason="Release 42", changed_by="ops@host")
    monkeypatch.setattr(state, "current", lambda: next(reads, on))  # off for the middleware only
    before = row_hashes()

    response = admin_client.post(
        "/admin/documents/submission/add/",
        {"ml_number": "ML-777", "title": "Raced the switch", "submitted_by": "Grace Hopper"},
        HTTP_ACCEPT="text/html",
    )

    assert response.status_code == 503
    assert REFUSED_REQUEST in response.content.decode()
    assert compare(before, row_hashes()).added == 0
    assert not Submission.objects.filter(ml_number="ML-777").exists()
