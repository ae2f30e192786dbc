from __future__ import annotations

import logging

import pytest
from django.core import mail

from deployguard import monitoring
from deployguard.models_integrity import ScrubRun
from documents import services
from documents.models import DataSource, Submission
from tests.documents.fakes import script_publishes_without_user
from tests.factories import SubmissionFactory


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.org")]


def test_unsafe_requests_are_logged_to_the_audit_logger(admin_client, admin_user, caplog):
    with caplog.at_level(logging.INFO, logger="deployguard.audit"):
        admin_client.get("/admin/")
        response = admin_client.post("/admin/logout/")
    [record] = [r for r in caplog.records if r.name == "deployguard.audit"]
    assert record.audit == {
        "user": admin_user.get_username(),
        "method": "POST",
        "path": "/admin/logout/",
        "status": response.status_code,
        "duration_ms": record.audit["duration_ms"],
        "deploy_mode": "off",
    }


def test_audit_log_reports_deploy_mode_from_the_reader(db, client, caplog):
    with caplog.at_level(logging.INFO, logger="deployguard.audit"):
        client.post("/admin/login/")
    assert "user=anonymous method=POST path=/admin/login/" in caplog.text
    assert "deploy_mode=off" in caplog.text


def test_a_committed_write_through_the_services_raises_no_alert(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        SubmissionFactory(status=Submission.Status.PUBLISHED)
    assert mail.outbox == []


def test_a_committed_write_without_a_user_is_logged_and_mailed(
    db, superuser, caplog, django_capture_on_commit_callbacks
):
    with caplog.at_level(logging.ERROR, logger="deployguard.monitoring"):
        with django_capture_on_commit_callbacks(execute=True):
            draft = script_publishes_without_user("ML-970", published_by=superuser, name="rfc970")
    subjects = {message.subject for message in mail.outbox}
    assert (
        f"[Django] Integrity violation: documents.publisheddraft {draft.pk} breaks documents.E021" in subjects
    )
    assert any("documents.submission" in s and "documents.E020" in s for s in subjects)
    assert f"manage.py explain_row documents.publisheddraft {draft.pk}" in caplog.text
    draft.refresh_from_db()
    assert draft.data_source == DataSource.PRODUCTION


def test_batched_checks_alert_on_the_committed_rows_when_the_block_ends(
    db, superuser, django_capture_on_commit_callbacks
):
    with monitoring.batched_checks():
        with django_capture_on_commit_callbacks(execute=True):
            draft = script_publishes_without_user("ML-971", published_by=superuser, name="rfc971")
        assert not mail.outbox

    subjects = {message.subject for message in mail.outbox}
    assert (
        f"[Django] Integrity violation: documents.publisheddraft {draft.pk} breaks documents.E021" in subjects
    )


def test_the_monitor_quarantines_when_asked(db, superuser, settings, django_capture_on_commit_callbacks):
    settings.DEPLOYGUARD_QUARANTINE_ON_VIOLATION = True
    with django_capture_on_commit_callbacks(execute=True):
        draft = script_publishes_without_user("ML-971", published_by=superuser, name="rfc971")
    draft.refresh_from_db()
    assert draft.data_source == DataSource.QUARANTINE
    assert Submission.objects.get(pk=draft.submission_id).data_source == DataSource.QUARANTINE
    assert set(ScrubRun.objects.values_list("kind", flat=True)) == {ScrubRun.Kind.MONITOR}


def test_the_monitor_never_fails_the_write(db, monkeypatch, caplog, django_capture_on_commit_callbacks):
    def broken(*args, **kwargs):
        raise RuntimeError("rules exploded")

    monkeypatch.setattr(monitoring, "evaluate", broken)
    with django_capture_on_commit_callbacks(execute=True):
        submission = SubmissionFactory()
    assert Submission.objects.filter(pk=submission.pk).exists()
    assert "Integrity check of documents.submission" in caplog.text


def test_the_monitor_can_be_turned_off(db, settings, superuser, django_capture_on_commit_callbacks):
    settings.DEPLOYGUARD_MONITOR_WRITES = False
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.create_submission(actor=superuser, ml_number="ML-972", title="Widgets", submitted_by="Ada")
    assert callbacks == []
