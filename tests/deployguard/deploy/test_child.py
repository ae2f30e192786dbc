"""What runs inside deploy_safe's processes: the rows a named data migration changed, and every
refusal reported, even one the code that tried it caught."""

from __future__ import annotations

import json

from django.db import transaction

import deployguard
from deployguard import guard, state
from deployguard.deploy import child
from deployguard.tables import migrate_writable_tables
from tests.documents.fakes import raw_insert_submission


def test_the_rows_a_data_migration_changed_are_listed_by_table_and_primary_key():
    before = {"auth_group": [(1, 10), (2, 20), (3, 30)], "documents_submission": [(1, 5)]}
    after = {
        "auth_group": [(1, 10), (2, 21), (4, 40)],
        "documents_submission": [(1, 5)],
        "schema_note": [(7, 1)],
    }

    assert child.changed_rows(before, after) == {
        "auth_group": {"added": [4], "removed": [3], "changed": [2]},
        "schema_note": {"added": [7], "removed": [], "changed": []},
    }


def test_every_protected_table_s_rows_are_hashed_bookkeeping_aside(db):
    from tests.factories import SubmissionFactory

    submission = SubmissionFactory(ml_number="ML-001")

    rows = child.protected_rows()

    assert [pk for pk, _ in rows["documents_submission"]] == [submission.pk]
    assert not migrate_writable_tables() & set(rows)
    assert not any(table.startswith("deployguard_") for table in rows)


def test_a_process_that_is_not_deploy_safe_s_is_left_as_it_is(monkeypatch):
    for variable in (child.SCHEMA_CHANGES_VARIABLE, child.REFUSALS_REPORT_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(guard, "refusal_listeners", [])

    child.prepare_process("runserver")

    assert guard.refusal_listeners == []
    assert state.current().source != "process"


def test_the_migrate_subprocess_reports_a_refusal_the_code_caught(db, tmp_path, monkeypatch):
    report = tmp_path / "refused.jsonl"
    monkeypatch.setenv(child.REFUSALS_REPORT_VARIABLE, str(report))
    monkeypatch.setattr(guard, "refusal_listeners", [])
    child.install_refusal_report()
    state.enable(reason="Release 42", changed_by="ops@host")

    try:
        with transaction.atomic():
            raw_insert_submission("ML-900")
    except deployguard.DeployModeActive:
        pass  # as careless code would

    [found] = [json.loads(line) for line in report.read_text().splitlines()]
    assert found["exception"] == "DeployModeActive"
    assert found["message"].startswith('Deploy mode is on: INSERT on "documents_submission" refused.')
    assert found["where"].endswith(" in raw_insert_submission()")
    assert "tests/documents/fakes.py:" in found["where"]
