"""The migrate subprocess: started early and frozen, it migrates only when deploy_safe says go."""

from __future__ import annotations

import subprocess

from tests.deploy_apps.support import BASE_DIR, PYTHON, Scratch, subprocess_env


def _deploy_safe_migrate(scratch: Scratch, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(BASE_DIR / "manage.py"), "deploy_safe_migrate", "--schema-changes-reason", "a test"],
        cwd=BASE_DIR,
        env=subprocess_env(
            scratch.url, DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings", DEPLOY_TEST_APPS="schema"
        ),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_migrate_subprocess_started_early_migrates_nothing_unless_told_to_go(scratch: Scratch):
    before = scratch.inspect()

    untold = _deploy_safe_migrate(scratch, stdin="")  # deploy_safe stopped before migrate

    assert untold.returncode == 3, untold.stderr
    assert "did not say go: nothing was migrated" in untold.stderr
    assert scratch.inspect() == before

    told = _deploy_safe_migrate(scratch, stdin="go\n")

    assert told.returncode == 0, told.stderr
    assert scratch.inspect()["migrations"]["schema"] == ["0001_initial"]


def test_nothing_is_pending_on_a_migrated_database_and_deployguard_s_own_can_be_asked_apart(db):
    from deployguard.deploy import migrate

    assert migrate.pending_migrations() == []
    assert migrate.pending_migrations(app="deployguard") == []


def test_a_subprocess_of_the_deploy_carries_its_id_and_only_then_the_schema_allowance(monkeypatch):
    from deployguard.deploy import child, migrate

    monkeypatch.setenv(child.SCHEMA_CHANGES_VARIABLE, "left over from a parent")

    command, env = migrate.manage_command("migrate", deploy_id="d-1", verbosity=2)
    frozen_command, frozen_env = migrate.manage_command(
        "deploy_safe_migrate", deploy_id="d-1", verbosity=0, schema_changes=False
    )

    assert command[-2:] == ["migrate", "--verbosity=2"]
    assert command[1].endswith("manage.py")
    assert env["DEPLOYGUARD_DEPLOY_ID"] == "d-1"
    assert env[child.SCHEMA_CHANGES_VARIABLE] == "deploy_safe d-1: migrate"
    assert frozen_command[-2:] == ["deploy_safe_migrate", "--verbosity=0"]
    assert child.SCHEMA_CHANGES_VARIABLE not in frozen_env
