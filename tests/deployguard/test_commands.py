"""manage.py deploy_mode on | off | status."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

import deployguard
from deployguard import state
from deployguard.management.commands.deploy_mode import EXIT_ALREADY_ON
from deployguard.models import DeployModeState
from tests.utils import run_command


def test_deploy_mode_on_blocks_writes_and_records_who_why_and_when(fast_switch, db):
    stdout, stderr, code = run_command(
        "deploy_mode", "on", "--reason", "Release 42", "--expected-minutes", "5"
    )
    assert code == 0, stderr
    assert stdout.startswith("Deploy mode is ON. It was turned on by ")
    assert "Release 42" in stdout
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        Group.objects.create(name="late")
    row = DeployModeState.objects.get()
    assert row.enabled and row.reason == "Release 42" and row.since and row.expected_end
    assert row.history.latest().history_change_reason == "Deploy mode on: Release 42"


def test_deploy_mode_off_restores_writes(fast_switch, db):
    run_command("deploy_mode", "on", "--reason", "Release 42")
    stdout, _, code = run_command("deploy_mode", "off")
    assert (stdout, code) == ("Deploy mode is OFF: writes are allowed again.\n", 0)
    Group.objects.create(name="after")
    assert Group.objects.count() == 1
    assert DeployModeState.history.count() == 3  # created, on, off


def test_deploy_mode_on_twice_exits_3_and_keeps_the_first_record(fast_switch, db):
    run_command("deploy_mode", "on", "--reason", "First deploy")
    _, stderr, code = run_command("deploy_mode", "on", "--reason", "Second deploy")
    assert code == EXIT_ALREADY_ON
    assert "Deploy mode is already on" in stderr and "First deploy" in stderr
    assert DeployModeState.objects.get().reason == "First deploy"


def test_deploy_mode_off_when_off_says_so(fast_switch, db):
    assert run_command("deploy_mode", "off")[:2] == ("Deploy mode was already off; nothing changed.\n", "")


def test_deploy_mode_on_needs_a_reason(fast_switch, db):
    _, stderr, code = run_command("deploy_mode", "on", "--reason", " ")
    assert code == 2
    assert state.REASON_REQUIRED in stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (
            ["on", "--reason", "release 42\nDeploy mode turned OFF by ops"],
            '--reason: "reason" must be one line',
        ),
        (["on", "--reason", "r", "--deploy-id", "d\x1b[2K"], '--deploy-id: "deploy_id" must be one line'),
        (["off", "--reason", "done\u2028x"], "it contains U+2028 (LINE SEPARATOR)"),
    ],
    ids=["on-reason-newline", "deploy-id-ansi", "off-reason-line-separator"],
)
def test_deploy_mode_refuses_text_that_is_not_one_printable_line_with_status_2(
    fast_switch, db, args, problem
):
    """The same rules as POST /_deploy/mode: what is refused there is refused here."""
    _, stderr, code = run_command("deploy_mode", *args)

    assert code == 2
    assert problem in stderr
    assert DeployModeState.objects.filter(enabled=True).count() == 0


def test_status_as_json_has_enabled_reason_who_and_since(fast_switch, db):
    stdout, _, code = run_command("deploy_mode", "status", "--format", "json")
    assert code == 0
    assert json.loads(stdout)["enabled"] is False
    run_command("deploy_mode", "on", "--reason", "Release 42")
    body = json.loads(run_command("deploy_mode", "status", "--format", "json")[0])
    assert body["enabled"] is True
    assert body["reason"] == "Release 42"
    assert "@" in body["who"]
    assert body["since"] is not None


def test_status_as_text_says_who_turned_it_on_and_that_the_database_is_not_frozen_yet(
    fast_switch, deploy_mode_on
):
    # Switched on inside the test's transaction, where the drain cannot freeze the database.
    stdout, stderr, code = run_command("deploy_mode", "status")
    assert code == 5
    assert stdout.startswith("Deploy mode is ON. It was turned on by ops@deploy-host")
    assert stderr.strip() == (
        "CommandError: The state says deploy mode is on but the database is not frozen (a switch in "
        "progress, or a drain that timed out): run `manage.py deploy_mode off` then "
        "`manage.py deploy_mode on`."
    )


def test_status_after_on_says_the_database_freeze_agrees(transactional_db, fast_switch):
    assert run_command("deploy_mode", "on", "--reason", "Release 42")[2] == 0
    try:
        stdout, _, code = run_command("deploy_mode", "status")
        assert code == 0
        assert stdout.splitlines()[-1] == "The database freeze is on, as the state says."
    finally:
        state.disable(changed_by="pytest")
    stdout, _, code = run_command("deploy_mode", "status", "--format", "json")
    assert code == 0
    assert (json.loads(stdout)["freeze"], json.loads(stdout)["freeze_agrees"]) == ("off", True)


def test_on_waits_out_the_state_cache_of_other_processes(db, settings, monkeypatch):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 2
    slept: list[float] = []
    monkeypatch.setattr("deployguard.state.time.sleep", slept.append)
    run_command("deploy_mode", "on", "--reason", "Release 42")
    assert slept == [2.25]
