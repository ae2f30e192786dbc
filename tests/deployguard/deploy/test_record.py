"""A deploy's account of itself: the report's keys, its DeployRecord row, its deploy log line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.utils import timezone

from deployguard.deploy import record
from deployguard.deploy.record import Record, Report
from deployguard.deploy.steps import EXIT_DEPLOYED, EXIT_RESTORED, Steps
from deployguard.models import DeployRecord

REPORT_KEYS = [
    "deploy_id", "status", "exit_status", "message", "started_at", "finished_at", "database", "engine",
    "backup", "steps", "blocked_writes", "data_migration_changes", "schema_changes", "freeze_window_s",
    "migrate_s",
]  # fmt: skip


def _report(lines: list[tuple[str, str]] | None = None) -> Report:
    output = (lambda style, text: lines.append((style, text))) if lines is not None else (lambda *line: None)
    return Report("d-1", timezone.now(), "default", Steps(output, verbosity=1))


def test_the_report_keeps_its_keys_in_order():
    report = _report()
    with report.steps.step("pre-check: one deploy at a time"):
        pass

    written = report.as_dict()

    assert list(written) == REPORT_KEYS
    assert (written["deploy_id"], written["status"], written["exit_status"]) == ("d-1", "running", 0)
    assert [step["name"] for step in written["steps"]] == ["pre-check: one deploy at a time"]
    assert (written["freeze_window_s"], written["migrate_s"]) == (None, None)  # deploy mode never went on


def test_the_freeze_window_runs_from_deploy_mode_on_to_off_and_holds_the_migrate_step(monkeypatch):
    clock = iter([100.0, 101.0, 103.5, 107.25])  # frozen, migrate starts, migrate ends, thawed
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))  # record's and steps' clock
    report = _report()

    report.frozen()
    with report.steps.step("migrate"):
        pass
    report.thawed()

    written = report.as_dict()

    assert (written["freeze_window_s"], written["migrate_s"]) == (7.25, 2.5)


def test_the_record_is_saved_as_the_deploy_goes_and_finished_once_with_a_log_line(db, settings, tmp_path):
    settings.DEPLOYGUARD_DEPLOY_LOG = str(tmp_path / "deploys.log")
    report = _report()
    account = Record(report)

    account.store(status="running")
    assert DeployRecord.objects.get().status == "running"
    assert record.running_record().deploy_id == "d-1"
    report.backup = Path("/backups/db.dump")
    account.finish("succeeded", EXIT_DEPLOYED, "Deploy d-1 done: migrated and verified.")

    row = DeployRecord.objects.get()
    assert (row.status, row.exit_status, row.message) == (
        "succeeded",
        0,
        "Deploy d-1 done: migrated and verified.",
    )
    assert row.backup_path == "/backups/db.dump"
    assert row.finished_at is not None
    assert row.report["status"] == "succeeded"
    assert [entry.history_change_reason for entry in row.history.order_by("history_id")] == [
        "deploy_safe: running",
        "deploy_safe: succeeded",
    ]
    assert record.running_record() is None
    [line] = [json.loads(text) for text in (tmp_path / "deploys.log").read_text().splitlines()]
    assert (line["deploy_id"], line["exit_status"], line["backup"]) == ("d-1", 0, "/backups/db.dump")
    assert not {"steps", "blocked_writes", "data_migration_changes"} & set(line)


def test_the_record_survives_a_restore_that_put_back_an_older_copy_of_it(db, settings, tmp_path):
    settings.DEPLOYGUARD_DEPLOY_LOG = str(tmp_path / "deploys.log")
    account = Record(_report())
    account.store(status="running")
    DeployRecord.objects.all().delete()  # the backup was taken before the row existed

    account.survive_restore()
    account.finish("rolled_back", EXIT_RESTORED, "Deploy d-1 failed and was rolled back.")

    assert list(DeployRecord.objects.values_list("deploy_id", "status")) == [("d-1", "rolled_back")]


def test_a_deploy_log_that_cannot_be_written_is_said_and_changes_nothing_else(db, settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings.DEPLOYGUARD_DEPLOY_LOG = str(blocker / "deploys.log")
    lines: list[tuple[str, str]] = []
    report = _report(lines)

    record.append_log(report)

    assert lines == [("ERROR", f"Could not append to the deploy log {blocker / 'deploys.log'}: File exists")]
