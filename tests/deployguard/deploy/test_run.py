"""The orchestrator in this process: a deploy that finds another running stops before its first
check, and --recover with nothing to recover says so. Whole deploys run in subprocesses:
test_end_to_end.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from deployguard import state
from deployguard.deploy import lock, run
from deployguard.deploy.steps import EXIT_DEPLOYED, EXIT_PRECHECK, FAILED, Output
from deployguard.models import DeployRecord


@pytest.fixture
def held(db, tmp_path, monkeypatch) -> Iterator[lock.DeployLock]:
    """The deploy lock, held by another deploy (on SQLite, a lock file beside a database file)."""
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    other = lock.DeployLock()
    assert other.acquire("d-other", "ops@host")
    yield other
    other.release()


def _lines() -> tuple[list[tuple[str, str]], Output]:
    lines: list[tuple[str, str]] = []
    return lines, lambda style, text: lines.append((style, text))


def test_a_deploy_that_finds_another_running_stops_at_once_touching_nothing(held):
    lines, output = _lines()

    report = run.deploy(run.Options(), output)

    assert lines[0][0] == "ERROR"

    assert report.exit_status == EXIT_PRECHECK
    assert report.message == lock.ANOTHER_DEPLOY.format(who=held.holder())
    assert [(step.name, step.status) for step in report.steps.taken] == [
        ("pre-check: one deploy at a time", FAILED)
    ]
    assert not DeployRecord.objects.exists()
    assert not state.current().enabled


def test_recover_with_no_deploy_left_running_says_so_and_exits_0(db, tmp_path, monkeypatch):
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    lines, output = _lines()

    report = run.recover(run.Options(), output)

    assert (report.exit_status, report.message) == (EXIT_DEPLOYED, run.NOTHING_TO_RECOVER)
    assert [step.name for step in report.steps.taken] == ["one deploy at a time"]
    assert lines[0][1].startswith("one deploy at a time: ok (")
