"""Every operator command's help lists its exit statuses, and each case returns one of them.

For each command: the statuses its help documents, and a case that returns each of them
(the case asserts the status); a documented status no case here reaches names the test
that proves it (deploy_safe's deploys run end to end in subprocesses).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import load_command_class
from django.db import connection

from deployguard import ownership, state
from deployguard.backup import RestoreUnverified
from deployguard.deploy import lock
from deployguard.exceptions import DrainTimeout
from deployguard.status import DeployModeStatus
from tests.deployguard.deploy import test_end_to_end
from tests.deployguard.support import BASE_DIR, PYTHON, subprocess_env
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command

COMMANDS = (
    "explain_row",
    "verify_integrity",
    "scrub_fake_data",
    "backup_db",
    "restore_db",
    "deploy_mode",
    "deploy_safe",
)
PROVED_ELSEWHERE = {
    ("deploy_safe", 0): test_end_to_end.test_a_harmless_schema_migration_deploys_and_is_verified,
    ("deploy_safe", 1): test_end_to_end.test_the_incident_replayed_is_blocked_rolled_back_and_explained,
    (
        "deploy_safe",
        3,
    ): test_end_to_end.test_integrity_errors_before_the_deploy_stop_it_with_every_rule_counted,
    (
        "deploy_safe",
        4,
    ): test_end_to_end.test_a_failed_migrate_whose_restore_cannot_be_verified_exits_4_and_stays_frozen,
}


def documented(command: str) -> set[int]:
    """The statuses after "Exit status:" in the command's help: "0 clean; 1 ...; 2 misuse"."""
    text = " ".join(load_command_class("deployguard", command).help.split())
    statuses = text.split("Exit status:", 1)[1]
    return {int(status) for status in re.findall(r"(?:^|[;:])\s*(\d)\s", statuses)}


def test_every_command_documents_its_exit_statuses():
    found = {command: documented(command) for command in COMMANDS}
    assert found == {
        "explain_row": {0, 2},
        "verify_integrity": {0, 1, 2},
        "scrub_fake_data": {0, 1, 2},
        "backup_db": {0, 1, 2},
        "restore_db": {0, 1, 2, 4},
        "deploy_mode": {0, 1, 2, 3, 4, 5, 6},
        "deploy_safe": {0, 1, 2, 3, 4},
    }


# --- each case: (command, status it must return, how to set it up and run it) --------------------

Case = Callable[[Any], tuple[str, str, int]]
CASES: dict[tuple[str, int], Case] = {}


def case(command: str, status: int) -> Callable[[Case], Case]:
    def register(function: Case) -> Case:
        CASES[(command, status)] = function
        return function

    return register


@case("explain_row", 0)
def _(env):
    return run_command("explain_row", "documents.publisheddraft", published_draft().name)


@case("explain_row", 2)
def _(env):
    return run_command("explain_row", "documents.submission", "ML-404")


@case("verify_integrity", 0)
def _(env):
    published_draft()
    return run_command("verify_integrity")


@case("verify_integrity", 1)
def _(env):
    SubmissionFactory(submitted_by="Test User")
    return run_command("verify_integrity")


@case("verify_integrity", 2)
def _(env):
    return run_command("verify_integrity", "--rule", "E999")


@case("scrub_fake_data", 0)
def _(env):
    SubmissionFactory(submitted_by="Test User")
    return run_command("scrub_fake_data")


@case("scrub_fake_data", 1)
def _(env):
    env.settings.DEPLOYGUARD_SCRUB_MIN_ROWS = 0
    SubmissionFactory(submitted_by="Test User")
    return run_command("scrub_fake_data", "--apply")


@case("scrub_fake_data", 2)
def _(env):
    return run_command("scrub_fake_data", "--older-than", "3")


@case("backup_db", 0)
def _(env):
    return run_command("backup_db", "--output", str(env.tmp_path / "b.bin"))


@case("backup_db", 1)
def _(env):
    (env.tmp_path / "b.bin").write_text("")
    return run_command("backup_db", "--output", str(env.tmp_path / "b.bin"))


@case("backup_db", 2)
def _(env):
    return run_command("backup_db", "--prune")


def _a_backup(env) -> Path:
    path = env.tmp_path / "b.bin"
    assert run_command("backup_db", "--output", str(path))[2] == 0
    return path


@case("restore_db", 0)
def _(env):
    # Restoring replaces the test database itself: the restore proper is proved in subprocesses
    # (test_backup.py, test_backup_manage.py); here, what the command returns when it succeeds.
    env.monkeypatch.setattr(
        "deployguard.management.commands.restore_db.restore_database", lambda *a, **k: None
    )
    return run_command("restore_db", str(_a_backup(env)), "--yes")


@case("restore_db", 1)
def _(env):
    # A backup damaged after it was made (a missing file is not a backup at all: 2).
    path = _a_backup(env)
    with path.open("ab") as backup:
        backup.write(b"damaged")
    return run_command("restore_db", str(path), "--yes")


@case("restore_db", 2)
def _(env):
    return run_command("restore_db", str(env.tmp_path / "b.bin"), "--database", "nope")


@case("restore_db", 4)
def _(env):
    def unverified(*args, **kwargs):
        raise RestoreUnverified("After restoring it the data does not match its manifest: x.")

    env.monkeypatch.setattr("deployguard.management.commands.restore_db.restore_database", unverified)
    return run_command("restore_db", str(_a_backup(env)), "--yes")


@case("deploy_mode", 0)
def _(env):
    return run_command("deploy_mode", "status")


@case("deploy_mode", 1)
def _(env):
    unreadable = DeployModeStatus(enabled=True, source="unreadable", error="connection refused")
    with env.monkeypatch.context() as patched:  # undone before the database is flushed
        patched.setattr(state, "current", lambda: unreadable)
        return run_command("deploy_mode", "status")


@case("deploy_mode", 2)
def _(env):
    return run_command("deploy_mode", "on")


@case("deploy_mode", 3)
def _(env):
    assert run_command("deploy_mode", "on", "--reason", "first")[2] == 0
    try:
        return run_command("deploy_mode", "on", "--reason", "second")
    finally:
        run_command("deploy_mode", "off", "--reason", "done")


@case("deploy_mode", 4)
def _(env):
    def slow_writer(**kwargs):
        state.enable(**kwargs)
        raise DrainTimeout("a transaction that wrote before deploy mode is still open")

    env.monkeypatch.setattr(state, "switch_on", slow_writer)
    try:
        return run_command("deploy_mode", "on", "--reason", "deploy")
    finally:
        run_command("deploy_mode", "off", "--reason", "done")


@case("deploy_mode", 5)
def _(env):
    # The state on and the database not frozen: a switch whose drain never ran.
    state.enable(reason="deploy", changed_by="ops@host")
    try:
        return run_command("deploy_mode", "status")
    finally:
        run_command("deploy_mode", "off", "--reason", "done")


@case("deploy_mode", 6)
def _(env):
    with env.monkeypatch.context() as patched:  # undone before the database is flushed
        if connection.vendor == "sqlite":  # the deploy lock is a file beside the database's
            patched.setitem(connection.settings_dict, "NAME", str(env.tmp_path / "db.sqlite3"))
        state.enable(reason="deploy_safe d-1", changed_by="ops@host", deploy_id="d-1")
        deploy_lock = lock.DeployLock()
        assert deploy_lock.acquire("d-1", "ops@host")
        ownership.mark_held("default", False)  # the deploy is another process's, not this one's
        try:
            return run_command("deploy_mode", "off")
        finally:
            deploy_lock.release()
            run_command("deploy_mode", "off", "--reason", "done")


@case("deploy_safe", 2)
def _(env):
    return run_command("deploy_safe", "--expected-minutes", "-1")


class Env:
    def __init__(self, settings, monkeypatch, tmp_path) -> None:
        self.settings, self.monkeypatch, self.tmp_path = settings, monkeypatch, tmp_path


@pytest.mark.parametrize(("command", "status"), sorted(CASES))
def test_each_case_returns_the_status_the_help_documents(
    transactional_db, settings, monkeypatch, tmp_path, command, status
):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    settings.DEPLOYGUARD_BACKUP_DIR = tmp_path / "backups"
    assert status in documented(command)
    stdout, stderr, returned = CASES[(command, status)](Env(settings, monkeypatch, tmp_path))
    assert returned == status, stdout + stderr
    if status == 0 or (command, status) == ("verify_integrity", 1):
        assert "CommandError" not in stderr  # findings are output; CommandError is for failures
    if status == 2:
        assert stdout == "" and stderr.startswith("CommandError: ") and len(stderr.splitlines()) == 1


def test_every_documented_status_has_a_case_or_names_the_test_that_proves_it():
    for command in COMMANDS:
        for status in documented(command):
            assert (command, status) in CASES or (command, status) in PROVED_ELSEWHERE, (command, status)
    assert all(proof.__name__.startswith("test_") for proof in PROVED_ELSEWHERE.values())


@pytest.mark.parametrize("command", COMMANDS)
def test_misuse_from_a_shell_exits_two_as_it_does_through_call_command(command):
    result = subprocess.run(
        [PYTHON, str(BASE_DIR / "manage.py"), command, "--no-such-option"],
        cwd=BASE_DIR, env=subprocess_env("sqlite:///:memory:"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert run_command(command, "--no-such-option")[2] == 2
