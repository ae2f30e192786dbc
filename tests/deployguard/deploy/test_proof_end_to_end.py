"""deploy_safe's proof end to end: what a migration changes behind a schema change, in the
bookkeeping tables, or by switching deploy mode off, fails the deploy and is put back."""

from __future__ import annotations

import fcntl
import signal
import subprocess

import psycopg
import pytest

from deployguard.deploy import lock, run
from deployguard.state import os_actor
from tests.deploy_apps.support import (
    BASE_DIR,
    PYTHON,
    Scratch,
    manage_with_apps,
    subprocess_env,
    table_rows,
    writes_tracked,
)
from tests.waiting import wait_until

ITEMS = (
    "INSERT INTO reshape_item (name, size, obsolete) "
    "VALUES ('alpha', 1, 'x'), ('beta', 20, ''), ('gamma', 300, 'y')"
)


@pytest.fixture
def reshape_ready(scratch: Scratch) -> Scratch:
    """The reshape app migrated to 0001 (outside any deploy), with three rows."""
    migrated = manage_with_apps(scratch, "reshape", "migrate", "reshape", "0001", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    code = f"from django.db import connection\nwith connection.cursor() as c:\n    c.execute({ITEMS!r})"
    inserted = manage_with_apps(scratch, "reshape", "shell", "-c", code)
    assert inserted.returncode == 0, inserted.stderr
    return scratch


@pytest.mark.parametrize(
    ("how", "differs"),
    [
        ("rewrite", "reshape_item: values differ in the columns that survived (id, name, size): "
                    "3 rows both times, contents differ"),
        ("retype_lossy", "reshape_item: values differ in the columns that survived (id, name, size): "
                         "3 rows both times, contents differ; retyped size did not keep every value's text: "
                         "if a migration converts them on purpose, name it with --allow-data-migration "
                         "APP.NAME"),
    ],
)  # fmt: skip
def test_a_migration_that_drops_a_column_and_rewrites_another_fails_and_is_rolled_back(
    reshape_ready: Scratch, how: str, differs: str
):
    scratch = reshape_ready
    before, documents_before = table_rows(scratch, "reshape_item"), scratch.inspect()

    result = scratch.deploy(apps="reshape", DEPLOY_TEST_RESHAPE=how)

    assert result.returncode == 1, result.stdout + result.stderr
    assert table_rows(scratch, "reshape_item") == before
    after = scratch.inspect()
    assert after["fingerprints"] == documents_before["fingerprints"]
    assert after["migrations"]["reshape"] == ["0001_initial"]
    assert not after["deploy_mode"]
    report = scratch.report()
    assert report["status"] == "rolled_back"
    assert report["message"].endswith(f"Data changed during the deploy: {differs}")
    assert (
        "reshape_item: columns dropped obsolete; the surviving columns compared by value"
        in (report["schema_changes"])
    )


def test_a_renamed_column_is_compared_under_its_new_name(reshape_ready: Scratch):
    scratch = reshape_ready
    before = table_rows(scratch, "reshape_item")

    rewritten = scratch.deploy(apps="reshape", DEPLOY_TEST_RESHAPE="rename_rewrite")

    assert rewritten.returncode == 1, rewritten.stdout + rewritten.stderr
    assert table_rows(scratch, "reshape_item") == before
    assert scratch.report()["message"].endswith(
        "Data changed during the deploy: reshape_item: values differ in the columns that survived "
        "(id, size, obsolete, name (now title)): 3 rows both times, contents differ"
    )

    renamed = scratch.deploy(apps="reshape", DEPLOY_TEST_RESHAPE="rename")

    assert renamed.returncode == 0, renamed.stdout + renamed.stderr
    assert (
        "reshape_item: columns renamed name to title; compared by value" in scratch.report()["schema_changes"]
    )


def test_a_migration_that_drops_a_column_and_keeps_every_other_value_deploys(reshape_ready: Scratch):
    scratch = reshape_ready
    before = table_rows(scratch, "reshape_item")

    result = scratch.deploy(apps="reshape", DEPLOY_TEST_RESHAPE="honest")

    assert result.returncode == 0, result.stdout + result.stderr
    assert scratch.report()["message"].endswith("migrated and verified.")
    assert "reshape_item: columns retyped size" in scratch.report()["schema_changes"]
    # The same rows, without the dropped column (SQLite: the values; PostgreSQL: ids).
    after = table_rows(scratch, "reshape_item")
    if scratch.url.startswith("sqlite"):
        assert after == [row[:3] for row in before]
    else:
        assert [row[0] for row in after] == [row[0] for row in before]


def test_a_rewrite_named_with_allow_data_migration_deploys_and_is_reported(reshape_ready: Scratch):
    scratch = reshape_ready

    result = scratch.deploy(
        "--allow-data-migration", "reshape.0002_reshape", apps="reshape", DEPLOY_TEST_RESHAPE="rewrite"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    changes = scratch.report()["data_migration_changes"]["reshape.0002_reshape"]
    assert changes["reshape_item"]["changed"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("how", "differs"),
    [
        ("swap", "auth_permission: rows that existed before the deploy changed "
                 "(N rows both times, contents differ)"),
        ("record", "django_migrations: gained documents.9999_never_ran, which this deploy did not apply"),
        ("grant", "auth_permission: gained do_anything (documents.submission), "
                  "which no installed model declares"),
    ],
)  # fmt: skip
def test_a_migration_that_writes_the_bookkeeping_tables_fails_and_is_rolled_back(
    scratch: Scratch, how: str, differs: str
):
    tables = ("auth_permission", "django_content_type", "django_migrations", "auth_group_permissions")
    before = {table: table_rows(scratch, table) for table in tables}
    differs = differs.replace("N rows", f"{len(before['auth_permission'])} rows")

    result = scratch.deploy(apps="permswap", DEPLOY_TEST_PERMSWAP=how)

    assert result.returncode == 1, result.stdout + result.stderr
    assert {table: table_rows(scratch, table) for table in tables} == before
    after = scratch.inspect()
    assert "permswap" not in after["migrations"]
    assert not after["deploy_mode"]
    report = scratch.report()
    assert report["status"] == "rolled_back"
    assert report["message"].endswith(f"Data changed during the deploy: {differs}"), report["message"]


def test_a_deploy_killed_the_instant_deploy_mode_went_on_is_recovered(scratch: Scratch):
    before = scratch.inspect()

    killed = scratch.deploy(apps="killer")

    assert killed.returncode == -signal.SIGKILL
    frozen = scratch.inspect()
    assert frozen["deploy_mode"]
    (deploy_id,) = frozen["records"]
    assert frozen["records"] == {deploy_id: "running"}  # saved before deploy mode went on
    assert writes_tracked(scratch)  # left by the killed deploy

    recovered = scratch.deploy("--recover", apps="killer")

    assert recovered.returncode == 0, recovered.stderr
    assert f"Recovered deploy {deploy_id}: {run.KILLED_BEFORE_BACKUP}." in recovered.stdout
    after = scratch.inspect()
    assert not after["deploy_mode"]
    assert after["records"] == {deploy_id: "recovered"}
    assert (after["fingerprints"], after["migrations"]) == (before["fingerprints"], before["migrations"])
    assert not writes_tracked(scratch)  # recovery takes the killed deploy's write tracking away


PUBLISH_LATER = """
from django.contrib.auth.models import User
from documents import services
editor = User.objects.get(username="editor")
submission = services.create_submission(
    actor=editor, ml_number="ML-002", title="Published after the backup", submitted_by="Bob Author"
)
services.approve_submission(actor=editor, submission=submission)
services.publish_submission(actor=editor, submission=submission, reason="Published after the backup")
"""

PLANT_RECORD = """
from django.utils import timezone
from deployguard.models import DeployRecord
DeployRecord.objects.create(
    deploy_id="20200101T000000-planted", status="running", started_at=timezone.now(), backup_path={path!r}
)
"""


def test_recover_refuses_a_planted_record_naming_an_old_backup_and_erases_nothing(scratch: Scratch):
    old = scratch.manage("backup_db", "--output", str(scratch.backup_dir / "old.backup"))
    assert old.returncode == 0, old.stderr
    old_backup = next(p for p in scratch.backup_dir.iterdir() if not p.name.endswith(".json"))
    assert scratch.manage("shell", "-c", PUBLISH_LATER).returncode == 0
    assert scratch.manage("shell", "-c", PLANT_RECORD.format(path=str(old_backup))).returncode == 0
    before = scratch.inspect()
    assert before["drafts"] == ["rfc1", "rfc2"]
    rows = table_rows(scratch, "documents_publisheddraft")

    result = scratch.deploy("--recover")

    assert result.returncode == 4, result.stdout + result.stderr
    assert (
        "Refused to recover deploy 20200101T000000-planted: its backup "
        f"{old_backup} was taken by backup_db, not a deploy, not by this deploy; deploy mode is off, so "
        "writes may have landed since its backup; the data differs from the backup in "
    ) in result.stderr
    assert "Nothing was restored" in result.stderr
    after = scratch.inspect()
    assert after["drafts"] == ["rfc1", "rfc2"]
    assert table_rows(scratch, "documents_publisheddraft") == rows
    assert after["records"] == {"20200101T000000-planted": "restore_failed"}
    assert scratch.report()["status"] == "restore_failed"


def test_a_deploy_through_another_path_to_the_same_database_meets_the_lock(scratch: Scratch, tmp_path):
    """The lock is the database's: a symlink to the SQLite file, or another spelling of the
    PostgreSQL server, meets the deploy that holds it (held here by the test itself)."""
    before = scratch.inspect()
    if scratch.url.startswith("sqlite"):
        real = scratch.url.removeprefix("sqlite:///")
        link = tmp_path / "elsewhere" / "link.sqlite3"
        link.parent.mkdir()
        link.symlink_to(real)
        other = Scratch(url=f"sqlite:///{link}", directory=scratch.directory)
        holder = open(lock.lock_path_for(real), "a+")
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("deploy held-by-test, started now by the test")
        holder.flush()
    else:
        other = Scratch(url=scratch.url.replace("127.0.0.1", "localhost"), directory=scratch.directory)
        assert other.url != scratch.url
        holder = psycopg.connect(scratch.url, autocommit=True)
        holder.execute("SELECT set_config('application_name', 'deploy_safe held-by-test the-test', false)")
        holder.execute("SELECT pg_advisory_lock(%s)", [lock.ADVISORY_LOCK_KEY])
    try:
        result = other.deploy(apps="schema")
    finally:
        holder.close()

    assert result.returncode == 3, result.stdout + result.stderr
    assert "Another deploy_safe is running (deploy held-by-test, started " in result.stderr
    assert "Nothing was touched." in result.stderr
    assert scratch.inspect() == before


def test_restore_db_keeps_deploy_mode_as_it_is_and_deployguards_own_records(scratch: Scratch):
    taken = scratch.manage("backup_db", "--output", str(scratch.backup_dir / "before.backup"))
    assert taken.returncode == 0, taken.stderr
    deployed = scratch.deploy(apps="schema")
    assert deployed.returncode == 0, deployed.stderr
    deploy_id = scratch.report()["deploy_id"]
    on = scratch.manage("deploy_mode", "on", "--reason", "maintenance by hand")
    assert on.returncode == 0, on.stderr
    before = scratch.inspect()
    assert before["deploy_mode"] and before["records"] == {deploy_id: "succeeded"}

    restored = scratch.manage("restore_db", str(scratch.backup_dir / "before.backup"), "--yes")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    after = scratch.inspect()
    assert after["deploy_mode"]  # as it was, not as the backup had it (off)
    assert after["records"] == {deploy_id: "succeeded"}
    assert after["deploy_mode_switches"] == before["deploy_mode_switches"]
    assert "schema" not in after["migrations"]  # the data did go back
    # The backup was taken with deploy mode off, so it held no freeze: the restored tables are
    # frozen again, as the state says.
    status = scratch.manage("deploy_mode", "status")
    assert status.returncode == 0, status.stdout + status.stderr


def test_deploy_mode_belongs_to_the_deploy_and_a_forced_switch_off_stops_it_without_erasing_writes(
    scratch: Scratch,
):
    signal_file, release = scratch.directory / "waiting", scratch.directory / "release"
    deploy = subprocess.Popen(
        [PYTHON, str(BASE_DIR / "manage.py"), *scratch.deploy_args()],
        cwd=BASE_DIR,
        env=subprocess_env(
            scratch.url,
            DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings",
            DEPLOYGUARD_STATE_CACHE_SECONDS="0",
            **scratch.deploy_env(
                "waiter", DEPLOY_TEST_SIGNAL_FILE=str(signal_file), DEPLOY_TEST_RELEASE_FILE=str(release)
            ),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: signal_file.exists() or deploy.poll() is not None, "the deploy to reach migrate")
        assert deploy.poll() is None, deploy.communicate()
        (deploy_id,) = scratch.inspect()["records"]

        refused = scratch.manage("deploy_mode", "off")
        assert refused.returncode == 6, refused.stdout + refused.stderr
        assert f"Deploy mode belongs to the running deploy (deploy {deploy_id}, started " in refused.stderr
        assert "run `manage.py deploy_safe --recover`" in refused.stderr
        assert scratch.inspect()["deploy_mode"]

        forced = scratch.manage("deploy_mode", "off", "--force", "--reason", "ops override")
        assert forced.returncode == 0, forced.stderr
        published = scratch.manage("shell", "-c", PUBLISH_LATER)
        assert published.returncode == 0, published.stderr
        written = table_rows(scratch, "documents_publisheddraft")
    finally:
        release.write_text("")
    stdout, stderr = deploy.communicate(timeout=180)

    assert deploy.returncode == 4, stdout + stderr
    assert f"Deploy {deploy_id} stopped: deploy mode was switched off at " in stderr
    assert (
        f" by {os_actor()}, so writes may have landed that a restore would erase: nothing was restored. "
        in (stderr)
    )
    assert "Deploy mode is ON again. Changed since the backup: " in stderr
    assert "documents_publisheddraft: 1 rows before, 2 after; " in stderr
    assert "documents_submission: 1 rows before, 2 after; " in stderr
    after = scratch.inspect()
    assert after["drafts"] == ["rfc1", "rfc2"]  # the acknowledged write is kept
    assert table_rows(scratch, "documents_publisheddraft") == written
    assert after["deploy_mode"]
    assert after["records"] == {deploy_id: "restore_failed"}
    report = scratch.report()
    assert report["exit_status"] == 4
    assert report["steps"][-1]["name"] == "deploy mode held"


def test_a_migration_that_switches_deploy_mode_off_is_refused_and_the_deploy_rolled_back(scratch: Scratch):
    before = scratch.inspect()

    result = scratch.deploy(apps="waiter", DEPLOY_TEST_WAITER="switch_off")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "migrate failed: DeployModeHeld at " in result.stderr
    assert "Deploy mode belongs to the running deploy (deploy " in result.stderr
    after = scratch.inspect()
    assert (after["fingerprints"], after["migrations"]) == (before["fingerprints"], before["migrations"])
    assert not after["deploy_mode"]
    assert scratch.report()["status"] == "rolled_back"
