"""The deploys page: every deploy_safe run, and each one step by step, read-only."""

from __future__ import annotations

import pytest

from deployguard.admin.deploys import blocked_writes, data_changes, steps
from deployguard.models import DeployRecord
from tests.deployguard.admin_support import DEPLOYS
from tests.factories import DeployRecordFactory

pytestmark = pytest.mark.django_db

FAILED_REPORT = {
    "freeze_window_s": 42.5,
    "steps": [
        {"name": "pre-checks", "status": "ok", "seconds": 2.25, "detail": {"checks": 9}},
        {"name": "migrate", "status": "failed", "seconds": 8.5, "detail": None},
    ],
    "blocked_writes": [
        {
            "exception": "DeployModeActive",
            "message": "Deploy mode is on: INSERT on documents_submission refused.",
            "where": "documents/apps.py:31 in ready() -> documents/seed.py:12 in seed_demo()",
        }
    ],
    "data_migration_changes": {
        "documents.0004_fill": {"documents_submission": {"added": [10, 11], "removed": [], "changed": [3]}}
    },
}


def test_the_list_shows_status_who_when_duration_freeze_window_backup_and_exit_status(operator_client):
    DeployRecordFactory(
        deploy_id="d-failed",
        status=DeployRecord.Status.ROLLED_BACK,
        exit_status=1,
        report=FAILED_REPORT,
        backup_path="/srv/var/backups/default-1.sqlite3",
    )

    body = operator_client.get(DEPLOYS).content.decode()

    row = body.split("d-failed")[1].split("</tr>")[0]
    assert "rolled back" in row
    assert "ci@build-7" in row
    assert "UTC (about 5 minutes ago)" in row
    assert "about 2 minutes" in row  # 95 seconds
    assert "42 seconds" in row
    assert "default-1.sqlite3" in row
    assert '<td class="field-exit">1</td>' in row


def test_a_deploy_page_shows_each_step_with_its_timing_what_tried_to_write_and_rows_changed(operator_client):
    record = DeployRecordFactory(status=DeployRecord.Status.ROLLED_BACK, exit_status=1, report=FAILED_REPORT)

    body = operator_client.get(f"{DEPLOYS}{record.pk}/change/").content.decode()

    steps_table = body.split('id="deploy-steps"')[1].split("</table>")[0]
    assert steps_table.index("pre-checks") < steps_table.index("migrate")
    assert "2.25" in steps_table and "8.50" in steps_table
    writes = body.split('id="deploy-blocked-writes"')[1].split("</table>")[0]
    assert "<code>documents/apps.py:31 in ready()</code>" in writes
    assert "<code>documents/seed.py:12 in seed_demo()</code>" in writes
    assert "Deploy mode is on: INSERT on documents_submission refused." in writes
    changes = body.split('id="deploy-data-changes"')[1].split("</table>")[0]
    assert "documents.0004_fill" in changes
    assert "added 10, 11; changed 3" in changes
    assert "42 seconds" in body


def test_the_report_is_read_defensively_whatever_it_holds():
    assert steps({"steps": "not a list"}) == []
    assert steps({"steps": [None, {"name": "x", "seconds": "soon"}]})[0].seconds is None
    assert blocked_writes({"blocked_writes": [{"where": ""}]})[0].places == []
    assert data_changes({"data_migration_changes": {"m": {"t": "nonsense"}}})[0].added == 0


@pytest.mark.parametrize("report", [{}, [], "text", {"steps": [1, 2]}, {"data_migration_changes": [1]}])
def test_a_deploy_page_renders_whatever_the_report_holds(operator_client, report):
    record = DeployRecordFactory(report=report)

    response = operator_client.get(f"{DEPLOYS}{record.pk}/change/")

    assert response.status_code == 200


def test_markup_in_a_deploy_message_is_shown_as_text(operator_client):
    record = DeployRecordFactory(message='<script>alert("deploy")</script>', started_by="<i>ci</i>")

    for url in (DEPLOYS, f"{DEPLOYS}{record.pk}/change/"):
        body = operator_client.get(url).content.decode()
        assert '<script>alert("deploy")' not in body
        assert "<i>ci</i>" not in body
    assert "&lt;script&gt;alert(&quot;deploy&quot;)&lt;/script&gt;" in body


def test_a_running_deploy_shows_how_long_it_has_been_running(operator_client):
    DeployRecordFactory(deploy_id="d-running", status=DeployRecord.Status.RUNNING, finished_at=None)

    body = operator_client.get(DEPLOYS).content.decode()

    assert "running for about 5 minutes" in body.split("d-running")[1]


def test_deploys_are_read_only_even_for_a_superuser(admin_client):
    record = DeployRecordFactory()

    assert admin_client.get(f"{DEPLOYS}add/").status_code == 403
    assert admin_client.post(f"{DEPLOYS}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"{DEPLOYS}{record.pk}/change/", {"status": "succeeded"}).status_code == 405
    assert DeployRecord.objects.get(pk=record.pk).status == record.status


def test_an_unknown_deploy_redirects_with_a_message_not_a_500(operator_client):
    for key in ("999999", "not-a-number", "%00"):
        response = operator_client.get(f"{DEPLOYS}{key}/change/")
        assert response.status_code == 302


def test_staff_without_the_view_permission_get_403(staff_client):
    record = DeployRecordFactory()

    assert staff_client.get(DEPLOYS).status_code == 403
    assert staff_client.get(f"{DEPLOYS}{record.pk}/change/").status_code == 403
