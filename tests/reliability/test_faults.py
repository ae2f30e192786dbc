"""Faults during deploy_safe: killed at each step, the connection cut mid-migrate, a full or
read-only backup disk, a corrupted backup, two deploys at once. Each ends with the protected
tables' rows, measured, equal to before the deploy."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy_apps import support as deploy_support
from tests.deploy_apps.support import Scratch, is_postgresql, mailed_env, writes_tracked
from tests.reliability import support_deploy
from tests.reliability.rows import compare
from tests.reliability.support_deploy import (
    finish,
    gate_file,
    peek,
    reach,
    release,
    start_deploy,
    state_of,
    subjects,
)
from tests.waiting import wait_until

scratch, scratch_template = deploy_support.scratch, deploy_support.scratch_template  # fixtures
template_rows = support_deploy.template_rows  # fixture

LEGITIMATE = {"submissions": ["ML-001"], "drafts": ["rfc1"]}


def documents_of(state: dict) -> dict:
    return {"submissions": state["submissions"], "drafts": state["drafts"]}


# --- SIGKILL at each step, then --recover -----------------------------------------------

# One step for each state a kill can leave behind, in order (killed on entering the step: it
# has not started, every earlier one has finished): the record saved, writes tracked, nothing
# copied yet; copied and fingerprinted while the site writes, nothing switched on; frozen with
# the backup not yet proved; backed up, not migrated; migrated, not verified; verified, still
# frozen; a failed migrate not yet rolled back (halfway). The other steps leave one of these
# states: the pre-checks that of the first, the read-only post-checks that of "post-check: health".
NOTHING_RAN = "killed before its backup was proved at the freeze, so before migrate: nothing ran"
KILLED_AT = [
    ("backup, before the freeze", "schema", NOTHING_RAN),
    ("deploy mode on", "schema", NOTHING_RAN),
    ("backup proved at the freeze", "schema", NOTHING_RAN),
    ("migrate", "schema", "proved unchanged: fingerprints and applied migrations equal the backup's"),
    ("post-check: health", "schema", "restored_because"),
    ("deploy mode off", "schema", "restored_because"),
    ("roll back", "halfway", "restored_because"),
]
BEFORE_THE_FREEZE = ("backup, before the freeze", "deploy mode on")


@pytest.mark.parametrize(("step", "apps", "recovered"), KILLED_AT, ids=[step for step, _, _ in KILLED_AT])
def test_deploy_safe_killed_at_any_step_is_recovered_with_nothing_lost_or_added(
    scratch: Scratch, template_rows, record_scenario, step, apps, recovered
):
    """deploy_safe SIGKILLed at any step: `--recover` exits 0, deploy mode ends off, rows equal before."""
    before = template_rows

    killed = finish(start_deploy(scratch, apps=f"gate,{apps}", kill_at=step))

    assert killed.returncode == -9, killed.stdout + killed.stderr
    entered_deploy_mode = step not in BEFORE_THE_FREEZE
    # Fail closed until recovered: still frozen, the record still running (saved before deploy mode
    # goes on, so even a kill entering that step leaves one for --recover).
    assert peek(scratch) == (entered_deploy_mode, ["running"])

    recover = scratch.deploy("--recover", apps=f"gate,{apps}")

    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert recovered in recover.stdout
    after_state, after = state_of(scratch)
    assert not after_state["deploy_mode"]
    assert apps not in after_state["migrations"]  # django_migrations' rows are compared below too
    assert documents_of(after_state) == LEGITIMATE
    assert list(after_state["records"].values()) == ["recovered"]
    assert not writes_tracked(scratch)  # the killed deploy's write tracking is taken away
    record_scenario(
        f"SIGKILL of deploy_safe entering {step!r}, then --recover",
        attempts=0,
        writes_refused=0,
        changes=compare(before, after),
        exit_status=f"killed (-9); --recover {recover.returncode}",
        apps=apps,
    )


# --- the database connection cut mid-migrate ----------------------------------------------


@pytest.mark.postgresql
def test_the_migrate_connection_terminated_mid_migration_is_rolled_back(
    scratch: Scratch, template_rows, record_scenario
):
    """The migrate connection killed by pg_terminate_backend mid-migration: exit 1, restored, rows equal."""
    before = template_rows
    signal_file = scratch.directory / "backend"

    deploy = start_deploy(scratch, apps="severed", DEPLOY_TEST_SIGNAL_FILE=str(signal_file))
    try:
        wait_until(lambda: signal_file.exists() and signal_file.read_text(), "the migration to start")
        backend = int(signal_file.read_text())
        with deploy_support.admin_connection() as admin:
            (terminated,) = admin.execute("SELECT pg_terminate_backend(%s)", [backend]).fetchone()
        assert terminated
    finally:
        signal_file.with_name("backend.go").touch()
    result = finish(deploy)

    assert result.returncode == 1, result.stdout + result.stderr
    report = scratch.report()
    assert report["status"] == "rolled_back"
    migrate = next(s for s in report["steps"] if s["name"] == "migrate")
    assert migrate["status"] == "failed"
    assert "terminating connection due to administrator command" in "\n".join(
        migrate["detail"]["stderr_tail"]
    )
    roll_back = next(s for s in report["steps"] if s["name"] == "roll back")
    assert roll_back["status"] == "ok"
    assert any("severed_cut" in why for why in roll_back["detail"]["restored_because"])  # the committed table
    after_state, after = state_of(scratch)
    assert not after_state["deploy_mode"]
    assert "severed" not in after_state["migrations"]
    record_scenario(
        "migrate's PostgreSQL backend terminated mid-migration",
        attempts=0,
        writes_refused=0,
        changes=compare(before, after),
        exit_status=result.returncode,
    )


# --- the backup disk full, or read-only ---------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own (needs root, as CI has): the backup directory's disk."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "deploy-test", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> None:
    """Write until the disk refuses with ENOSPC: a real full disk, not a simulated one."""
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as refused:
            while True:
                os.write(descriptor, b"\0" * 4096)
    finally:
        os.close(descriptor)
    assert refused.value.errno == errno.ENOSPC


def assert_backup_failed_and_nothing_migrated(scratch, result, before, backups):
    assert result.returncode == 1, result.stdout + result.stderr
    report = scratch.report()
    assert report["status"] == "rolled_back"
    # The backup is taken before deploy mode goes on: it failed there, nothing was frozen.
    assert report["steps"][-1]["name"] == "backup, before the freeze"
    assert "deploy mode on" not in [s["name"] for s in report["steps"]]
    assert report["steps"][-1]["status"] == "failed"
    assert report["message"].startswith("The backup failed (") and report["message"].endswith(
        "); nothing was migrated."
    )
    assert sorted(p.name for p in backups.iterdir() if p.name != "filler") == []  # no partial backup left
    after_state, after = state_of(scratch)
    assert not after_state["deploy_mode"]
    assert "schema" not in after_state["migrations"]
    assert list(after_state["records"].values()) == ["rolled_back"]
    return compare(before, after)


def test_a_full_backup_disk_stops_the_deploy_before_migrate_with_nothing_changed(
    scratch: Scratch, template_rows, small_disk, record_scenario
):
    """The backup disk full (ENOSPC on a real tmpfs): exit 1 before migrate, no partial backup, rows equal."""
    before = template_rows
    fill(small_disk)

    result = scratch.deploy("--backup-dir", str(small_disk), apps="schema")

    changes = assert_backup_failed_and_nothing_migrated(scratch, result, before, small_disk)
    # What each engine's backup says: pg_dump's write error, SQLite's backup API's SQLITE_FULL.
    assert ("No space left on device" if is_postgresql() else "database or disk is full") in result.stderr
    record_scenario(
        "backup disk full (ENOSPC, 256 KiB tmpfs)",
        attempts=0, writes_refused=0, changes=changes, exit_status=result.returncode,
    )  # fmt: skip


def test_a_backup_directory_that_turns_read_only_after_the_pre_checks_stops_the_deploy(
    scratch: Scratch, template_rows, small_disk, record_scenario
):
    """The backup directory read-only after its pre-check (EROFS): exit 1 before migrate, rows equal."""
    before = template_rows
    # The last pre-check, entered after "backup directory writable" passed; the backup comes next.
    last_pre_check = "pre-check: write-path audit"
    deploy = start_deploy(
        scratch, "--backup-dir", str(small_disk), apps="gate,schema", pause_at=(last_pre_check,)
    )
    try:
        reach(deploy, scratch, last_pre_check)
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=False)
        assert remounted.returncode == 0
    finally:
        release(scratch, last_pre_check)
    result = finish(deploy)

    changes = assert_backup_failed_and_nothing_migrated(scratch, result, before, small_disk)
    assert "Read-only file system" in result.stderr
    record_scenario(
        "backup directory read-only after the pre-checks (EROFS)",
        attempts=0, writes_refused=0, changes=changes, exit_status=result.returncode,
    )  # fmt: skip


# --- a corrupted backup when --recover needs it ---------------------------------------------


def test_a_corrupted_backup_at_recover_exits_4_stays_frozen_alerts_and_an_earlier_backup_restores(
    scratch: Scratch, template_rows, record_scenario
):
    """A corrupted backup at --recover: exit 4, deploy mode stays on, admins mailed, the way out works."""
    before = template_rows
    mail = mailed_env(scratch)
    killed = finish(start_deploy(scratch, apps="gate,schema", kill_at="post-check: health", **mail))
    assert killed.returncode == -9
    (backup,) = (p for p in scratch.backup_dir.iterdir() if not p.name.endswith(".manifest.json"))
    # The operator's other copy of a backup taken before the deploy (off-site, say): intact.
    earlier = scratch.directory / "off-site" / backup.name
    earlier.parent.mkdir()
    for source in (backup, backup.with_name(backup.name + ".manifest.json")):
        shutil.copy2(source, earlier.parent / source.name)
    with backup.open("r+b") as damaged:  # a flipped run of bytes in the middle of the file
        damaged.seek(backup.stat().st_size // 2)
        damaged.write(b"\xff" * 64)

    recover = scratch.deploy("--recover", apps="gate,schema", **mail)

    assert recover.returncode == 4, recover.stdout + recover.stderr
    message = " ".join(recover.stderr.split())
    for text in (
        f"its backup {backup} cannot be used",
        "nothing was restored",
        "Deploy mode stays ON",
        "manage.py restore_db OTHER_BACKUP --yes",
        f"backups are in {scratch.backup_dir}",
    ):
        assert text in message, text
    deploy_id = gate_file(scratch, "post-check: health", "reached").read_text()
    assert peek(scratch) == (True, ["restore_failed"])  # fail closed: the migration is still applied
    assert subjects(scratch) == [f"[Django] deploy_safe {deploy_id}: restore_failed"]

    # The way out the message names: an earlier backup, checked, then deploy mode off.
    restored = scratch.manage("restore_db", str(earlier), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert scratch.manage("verify_integrity").returncode == 0
    assert scratch.manage("deploy_mode", "off").returncode == 0
    after_state, after = state_of(scratch)
    assert not after_state["deploy_mode"]
    assert "schema" not in after_state["migrations"]
    assert documents_of(after_state) == LEGITIMATE
    record_scenario(
        "corrupted backup when --recover needs it, then an earlier backup restored",
        attempts=0,
        writes_refused=0,
        changes=compare(before, after),
        exit_status=f"killed (-9); --recover {recover.returncode}; restore_db {restored.returncode}",
    )


# --- two deploys at once -------------------------------------------------------------------


def test_two_deploys_started_at_once_one_proceeds_and_the_other_exits_3_naming_it(
    scratch: Scratch, template_rows, record_scenario
):
    """Two deploy_safe started at once: one proceeds, the other exits 3 naming it and touching nothing."""
    before = template_rows
    # Both pause just after taking the lock, before any record exists: the narrowest window.
    gate = "pre-check: no incomplete deploy"
    deploys = [
        start_deploy(
            scratch, apps="gate,schema", pause_at=(gate,), report=scratch.directory / f"report-{n}.json"
        )
        for n in (1, 2)
    ]
    try:
        wait_until(lambda: any(d.poll() is not None for d in deploys), "one of the two deploys to give up")
        loser = next(d for d in deploys if d.poll() is not None)
        winner = next(d for d in deploys if d is not loser)
        winner_id = reach(winner, scratch, gate)
        lost = finish(loser)
        during = peek(scratch)
    finally:
        release(scratch, gate)
    won = finish(winner)

    assert lost.returncode == 3, lost.stdout + lost.stderr
    assert f"Another deploy_safe is running (deploy {winner_id}, started " in lost.stderr
    assert "Nothing was touched." in lost.stderr
    assert during == (False, [])  # the loser switched nothing on; the winner has not yet either
    assert won.returncode == 0, won.stdout + won.stderr
    after_state, after = state_of(scratch)
    assert after_state["records"] == {winner_id: "succeeded"}
    assert after_state["migrations"]["schema"] == ["0001_initial"]
    # The winner's migration legitimately adds bookkeeping rows; the data is what must not move.
    ignore = frozenset({"django_migrations", "django_content_type", "auth_permission"})
    record_scenario(
        "two deploy_safe started at once",
        attempts=0,
        writes_refused=0,
        changes=compare(before, after, ignore=ignore),
        exit_status=f"{won.returncode} and {lost.returncode}",
    )
