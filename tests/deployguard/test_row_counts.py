"""verify_integrity notices rows disappearing that no purge accounts for."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from deployguard import row_counts
from deployguard.models_integrity import ScrubRun, TableRowCount
from documents.models import PublishedDraft, Submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import rewriting_history, run_command

pytestmark = pytest.mark.django_db


def delete_by_sql(table: str, where: str = "") -> None:
    """Delete around the services, as a careless script would: history rows too, which nothing may."""
    with rewriting_history("a test deletes rows around the services"), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} {where}")  # noqa: S608 (test tables, no input)


def lost_rules(stdout: str) -> dict[str, int]:
    report = json.loads(stdout)
    return {rule["model"]: rule["count"] for rule in report["rules"] if rule["id"] == row_counts.LOST_ROWS_ID}


def test_a_clean_verify_records_the_row_counts_of_every_checked_table(db):
    published_draft()
    SubmissionFactory()

    assert run_command("verify_integrity")[2] == 0

    assert dict(TableRowCount.objects.values_list("table", "rows")) == {
        "documents_submission": 2,
        "documents_historicalsubmission": 4,  # created, approved, published; created
        "documents_publisheddraft": 1,
        "documents_historicalpublisheddraft": 1,
    }


def test_rows_deleted_around_the_services_fail_verify_integrity_with_the_tables_named(db):
    published_draft()
    SubmissionFactory()
    run_command("verify_integrity")
    # What `flush` or a stray DELETE leaves: no rows, no history, nothing that says why.
    for table in (
        "documents_publisheddraft",
        "documents_historicalpublisheddraft",
        "documents_historicalsubmission",
        "documents_submission",
    ):
        delete_by_sql(table)

    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")

    assert status == 1
    assert lost_rules(stdout) == {
        "documents.submission": 2,
        "documents.historicalsubmission": 4,
        "documents.publisheddraft": 1,
        "documents.historicalpublisheddraft": 1,
    }
    table, table_status = run_command("verify_integrity")[0], run_command("verify_integrity")[2]
    assert table_status == 1
    assert "deployguard.E101" in table
    assert "documents_submission holds 0 rows, 2 fewer than the 2 recorded" in table
    assert "restore_db" in table


def test_one_row_deleted_by_sql_is_noticed(db):
    kept, gone = SubmissionFactory(), SubmissionFactory()
    run_command("verify_integrity")
    delete_by_sql("documents_historicalsubmission", f"WHERE id = {gone.pk}")
    delete_by_sql("documents_submission", f"WHERE id = {gone.pk}")

    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")

    assert status == 1
    assert lost_rules(stdout) == {"documents.submission": 1, "documents.historicalsubmission": 1}
    assert Submission.objects.filter(pk=kept.pk).exists()


def test_a_purge_through_the_services_is_accounted_for(db):
    legitimate = SubmissionFactory()
    SubmissionFactory(submitted_by="Test User")
    run_command("scrub_fake_data", "--apply", "--force")
    run_command("verify_integrity")
    ScrubRun.objects.update(created_at=timezone.now() - timedelta(days=40))  # old enough to purge

    _stdout, stderr, status = run_command("scrub_fake_data", "--purge", "--older-than", "30", "--apply")
    assert status == 0, stderr
    stdout, stderr, status = run_command("verify_integrity", "--format", "json")

    assert status == 0, stdout + stderr
    assert lost_rules(stdout) == {}
    assert list(Submission.objects.values_list("pk", flat=True)) == [legitimate.pk]
    assert TableRowCount.objects.get(table="documents_submission").rows == 1


def test_accept_row_counts_records_the_counts_once_a_loss_is_explained(db):
    SubmissionFactory()
    gone = SubmissionFactory()
    run_command("verify_integrity")
    delete_by_sql("documents_historicalsubmission", f"WHERE id = {gone.pk}")
    delete_by_sql("documents_submission", f"WHERE id = {gone.pk}")
    assert run_command("verify_integrity")[2] == 1

    _stdout, _stderr, status = run_command("verify_integrity", "--accept-row-counts")

    assert status == 0
    assert TableRowCount.objects.get(table="documents_submission").rows == 1
    assert run_command("verify_integrity")[2] == 0


def test_tables_never_recorded_report_no_loss(db):
    published_draft()
    delete_by_sql("documents_historicalpublisheddraft")

    assert row_counts.losses() == []
    assert PublishedDraft.objects.count() == 1
