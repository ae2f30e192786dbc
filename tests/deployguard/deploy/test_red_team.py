"""Red team: writes that land between the early backup's copy and the freeze (or under it), by
clients that do not go through Django, must be in the data a failed deploy restores, and must be
seen by a successful deploy's post-checks (deployguard.deploy.backup_first, deployguard.written,
deployguard.written_pg). Each test asserts the guarantee: one that fails has found a hole.

Found by the red team (2026-12-02) and fixed since: the site's own triggers fired in the copy
when written tables were copied again into it (backup_first._copy_tables); the unproved copy of a
deploy killed at the freeze was left in the backup directory (--recover removes it); on
PostgreSQL, a sequence moved by a rolled-back INSERT between the dump and the freeze was set back
by the restore (the dump's sequences are now compared at the freeze: deployguard.sequences).
Known limit, kept as strict xfails (TRIGGERLESS): on SQLite, writes that fire no trigger.
"""

from __future__ import annotations

import contextlib
import shutil  # noqa: F401 (a skipif condition names it)
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.deploy_apps.support import (
    PYTHON,
    Scratch,
    is_postgresql,
    writes_tracked,
)
from tests.deployguard.support import BASE_DIR, subprocess_env
from tests.waiting import wait_until

BEFORE_THE_COPY = "pre-check: write-path audit"  # after the counting starts; the gate splits names on commas
BEFORE_THE_FREEZE = "deploy mode on"  # entered after the early copy, before deploy mode goes on
UNDER_THE_FREEZE = "backup proved at the freeze"  # entered once the drain is done
DURING_MIGRATE = "migrate"

sqlite_only = pytest.mark.skipif("is_postgresql()", reason="SQLite's write counting")
# Known limit, shared with SQLite's freeze (deployguard.freeze_sqlite): SQLite has no access
# control, and a write that fires no trigger (the incremental blob API, a connection with its
# triggers switched off) is neither refused nor counted. Kept as strict xfails: they fail the
# suite the day the limit is lifted, and say exactly what it is until then.
TRIGGERLESS = "SQLite: a write that fires no trigger is neither refused by the freeze nor counted"
postgresql_only = pytest.mark.skipif("not is_postgresql()", reason="PostgreSQL's write log")


def sqlite_path(scratch: Scratch) -> str:
    return scratch.url.removeprefix("sqlite:///")


@contextlib.contextmanager
def raw(scratch: Scratch) -> Iterator[Any]:
    """An autocommit connection of the scratch database's own driver, as another program's."""
    if is_postgresql():
        with psycopg.connect(scratch.url, autocommit=True) as db:
            yield db
        return
    db = sqlite3.connect(sqlite_path(scratch), timeout=60, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def connect_for_another_thread(scratch: Scratch) -> Any:
    """An autocommit connection that a thread other than its opener may commit on."""
    if is_postgresql():
        return psycopg.connect(scratch.url, autocommit=True)
    return sqlite3.connect(sqlite_path(scratch), timeout=60, isolation_level=None, check_same_thread=False)


def query(scratch: Scratch, sql: str) -> list[tuple[Any, ...]]:
    with raw(scratch) as db:
        return [tuple(row) for row in db.execute(sql).fetchall()]


def execute(scratch: Scratch, *statements: str) -> None:
    with raw(scratch) as db:
        for statement in statements:
            db.execute(statement)


def gated_deploy(
    scratch: Scratch, apps: str, pause_at: str, at_the_gate: Callable[[], None], **extra: str
) -> subprocess.CompletedProcess[str]:
    """deploy_safe with the deploy test apps `apps` (and the gate), paused on entering the step
    `pause_at` while `at_the_gate()` runs; then let go and waited for."""
    return gated_deploy_at(scratch, apps, [(pause_at, at_the_gate)], **extra)


def gated_deploy_at(
    scratch: Scratch, apps: str, gates: list[tuple[str, Callable[[], None]]], **extra: str
) -> subprocess.CompletedProcess[str]:
    """As gated_deploy(), paused at each of `gates` (a step's name, what runs there) in turn."""
    gate = scratch.directory / "gate"
    gate.mkdir(exist_ok=True)
    env = subprocess_env(
        scratch.url, DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings", DEPLOYGUARD_STATE_CACHE_SECONDS="0",
        **scratch.deploy_env(
            f"gate,{apps}", DEPLOY_TEST_GATE_DIR=str(gate),
            DEPLOY_TEST_PAUSE_AT=",".join(name for name, _ in gates), **extra,
        ),
    )  # fmt: skip
    process = subprocess.Popen(
        [PYTHON, str(BASE_DIR / "manage.py"), *scratch.deploy_args()],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for name, at_the_gate in gates:
            stem = name.replace(" ", "_").replace(":", "")
            reached = gate / f"{stem}.reached"
            wait_until(
                lambda reached=reached: reached.exists() or process.poll() is not None,
                f"deploy_safe to reach {name!r}",
                timeout=120,
            )
            assert process.poll() is None, process.communicate()
            try:
                at_the_gate()
            finally:
                (gate / f"{stem}.go").write_text("")
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def steps_of(scratch: Scratch) -> dict[str, Any]:
    return {step["name"]: step for step in scratch.report()["steps"]}


def editor_id(scratch: Scratch) -> int:
    return int(query(scratch, "SELECT id FROM auth_user WHERE username = 'editor'")[0][0])


# --- SQLite: writes the counting triggers never see -------------------------------------------


@sqlite_only
@pytest.mark.xfail(strict=True, reason=TRIGGERLESS)
def test_a_blob_write_between_the_copy_and_the_freeze_is_in_the_restored_data(scratch: Scratch):
    """sqlite3's incremental BLOB I/O (Python's Connection.blobopen) writes a row's value in place
    and fires no trigger: the count stays, so the table is 'proved' unwritten."""
    execute(scratch, "UPDATE auth_user SET first_name = 'aaaaaa' WHERE username = 'editor'")
    row = editor_id(scratch)

    def blob_write() -> None:
        with raw(scratch) as db, db.blobopen("auth_user", "first_name", row) as blob:
            blob.write(b"bbbbbb")

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, blob_write)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored_because" in steps_of(scratch)["roll back"]["detail"]
    # The data at the freeze had 'bbbbbb': a restore of 'aaaaaa' erased a committed write.
    assert query(scratch, "SELECT first_name FROM auth_user WHERE username = 'editor'") == [("bbbbbb",)]


@sqlite_only
@pytest.mark.xfail(strict=True, reason=TRIGGERLESS)
def test_a_blob_write_under_the_freeze_during_a_successful_deploy_is_not_missed(scratch: Scratch):
    """The freeze's triggers do not refuse a BLOB write either; the post-checks, told by the
    counts that auth_user was not written, must still not report the data as verified."""
    execute(scratch, "UPDATE auth_user SET first_name = 'aaaaaa' WHERE username = 'editor'")
    row = editor_id(scratch)

    def blob_write() -> None:
        with raw(scratch) as db, db.blobopen("auth_user", "first_name", row) as blob:
            blob.write(b"cccccc")

    result = gated_deploy(scratch, "schema", DURING_MIGRATE, blob_write)

    written = query(scratch, "SELECT first_name FROM auth_user WHERE username = 'editor'")
    # Either the write was refused (the freeze held), or the deploy noticed it (exit status not 0).
    assert written == [("aaaaaa",)] or result.returncode != 0, (written, result.stdout)


@sqlite_only
def test_a_trigger_of_the_site_on_a_protected_table_does_not_change_the_copy_when_tables_are_copied_again(
    scratch: Scratch,
):
    """backup_first._copy_tables deletes and inserts rows in the copy, which still has the
    site's own triggers: they fire there, on tables not copied again."""
    execute(
        scratch,
        "UPDATE auth_user SET last_name = 'kept' WHERE username = 'editor'",
        "INSERT INTO auth_group (name) VALUES ('in the copy')",
        "CREATE TRIGGER red_group_deleted AFTER DELETE ON auth_group "
        "BEGIN UPDATE auth_user SET last_name = 'a group was deleted' WHERE username = 'editor'; END",
    )
    before = query(scratch, "SELECT * FROM auth_user ORDER BY id")

    result = gated_deploy(
        scratch, "halfway", BEFORE_THE_FREEZE,
        lambda: execute(scratch, "INSERT INTO auth_group (name) VALUES ('added before the freeze')"),
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored_because" in steps_of(scratch)["roll back"]["detail"]
    assert sorted(query(scratch, "SELECT name FROM auth_group")) == [
        ("added before the freeze",),
        ("in the copy",),
    ]
    # Nobody deleted a group on the live database: auth_user at the freeze is as it was.
    assert query(scratch, "SELECT * FROM auth_user ORDER BY id") == before


@sqlite_only
def test_a_write_in_wal_mode_between_the_copy_and_the_freeze_is_in_the_restored_data(scratch: Scratch):
    execute(scratch, "PRAGMA journal_mode = WAL")

    def writes() -> None:
        with raw(scratch) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO auth_group (name) VALUES ('wal')")
            db.execute("SAVEPOINT s")
            db.execute("INSERT INTO auth_group (name) VALUES ('rolled back to the savepoint')")
            db.execute("ROLLBACK TO s")
            db.execute("RELEASE s")
            db.execute("UPDATE auth_user SET last_name = 'wal' WHERE username = 'editor'")
            db.execute("COMMIT")

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, writes)

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("wal",)]
    assert query(scratch, "SELECT last_name FROM auth_user WHERE username = 'editor'") == [("wal",)]


@sqlite_only
def test_replace_and_upsert_between_the_copy_and_the_freeze_are_in_the_restored_data(scratch: Scratch):
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('one'), ('two')")
    ids = dict(query(scratch, "SELECT name, id FROM auth_group"))

    def writes() -> None:
        execute(
            scratch,
            f"INSERT OR REPLACE INTO auth_group (id, name) VALUES ({ids['one']}, 'one replaced')",  # noqa: S608
            "INSERT INTO auth_group (name) VALUES ('two') "
            "ON CONFLICT (name) DO UPDATE SET name = 'two upserted'",
        )

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, writes)

    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(query(scratch, "SELECT name FROM auth_group")) == [("one replaced",), ("two upserted",)]


# --- Both engines -------------------------------------------------------------------------------


def test_a_delete_and_an_insert_keeping_the_count_are_in_the_restored_data(scratch: Scratch):
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('old')")

    def writes() -> None:
        execute(
            scratch,
            "DELETE FROM auth_group WHERE name = 'old'",
            "INSERT INTO auth_group (name) VALUES ('new')",
        )

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, writes)

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("new",)]


def test_an_update_that_changes_nothing_keeps_the_data_as_it_was(scratch: Scratch):
    before = query(scratch, "SELECT * FROM auth_user ORDER BY id")

    result = gated_deploy(
        scratch, "halfway", BEFORE_THE_FREEZE,
        lambda: execute(scratch, "UPDATE auth_user SET last_name = last_name"),
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT * FROM auth_user ORDER BY id") == before


def test_a_transaction_open_across_the_copy_and_committed_before_the_freeze_is_in_the_restored_data(
    scratch: Scratch,
):
    held: list[Any] = []

    def open_it() -> None:  # after the counting started, before the copy
        db = connect_for_another_thread(scratch)
        db.execute("BEGIN")
        db.execute("INSERT INTO auth_group (name) VALUES ('opened before the copy')")
        held.append(db)

    def commit_it() -> None:
        held[0].execute("COMMIT")
        held[0].close()

    # Written before the copy (PostgreSQL: before the dump's snapshot), committed after it.
    result = gated_deploy(
        scratch, "halfway", BEFORE_THE_COPY,
        lambda: (open_it(), _commit_when_copied(scratch, commit_it)),
    )  # fmt: skip

    assert not writes_tracked(scratch), "deploy_safe left its write tracking installed"
    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("opened before the copy",)]


def _commit_when_copied(
    scratch: Scratch, commit: Callable[[], None], go: str = "pre-check_write-path_audit.go"
) -> None:
    """Commit on a thread of its own 1.5s after the gate `go` opens: the gate pauses on entering a
    step, so the commit lands in what follows (the copy, or the freeze's drain)."""
    gate = scratch.directory / "gate"

    def later() -> None:
        wait_until(lambda: (gate / go).exists(), "the gate to open", timeout=60)
        time.sleep(1.5)
        commit()

    threading.Thread(target=later, daemon=True).start()


# --- PostgreSQL ---------------------------------------------------------------------------------


@postgresql_only
def test_a_sequence_advanced_between_the_dump_and_the_freeze_is_not_set_back_by_the_restore(scratch: Scratch):
    """A rolled-back insert (or a nextval() whose value went elsewhere) advances the sequence and
    logs nothing: the dump taken before holds the older value, so ids handed out are reused."""

    def advance() -> None:
        with raw(scratch) as db:
            db.execute("BEGIN")
            db.execute("INSERT INTO auth_group (name) VALUES ('rolled back')")
            db.execute("ROLLBACK")
            db.execute("SELECT nextval(pg_get_serial_sequence('auth_group', 'id'))")

    at_freeze: list[Any] = []

    def advance_and_note() -> None:
        advance()
        at_freeze.extend(query(scratch, "SELECT last_value FROM auth_group_id_seq"))

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, advance_and_note)

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT last_value FROM auth_group_id_seq") >= at_freeze


@postgresql_only
def test_truncate_and_copy_between_the_dump_and_the_freeze_are_in_the_restored_data(scratch: Scratch):
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('truncated')")

    def writes() -> None:
        with raw(scratch) as db:
            db.execute("TRUNCATE auth_group CASCADE")
            with db.cursor().copy("COPY auth_group (name) FROM STDIN") as copy:
                copy.write_row(["copied"])
            db.execute(
                "INSERT INTO auth_group (name) VALUES ('copied') "
                "ON CONFLICT (name) DO UPDATE SET name = 'upserted'"
            )
            db.execute("BEGIN")
            db.execute("SAVEPOINT s")
            db.execute("INSERT INTO auth_group (name) VALUES ('in a subtransaction')")
            db.execute("RELEASE s")
            db.execute("COMMIT")

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, writes)

    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(query(scratch, "SELECT name FROM auth_group")) == [("in a subtransaction",), ("upserted",)]


@postgresql_only
def test_a_write_with_session_replication_role_replica_is_in_the_restored_data(scratch: Scratch):
    def writes() -> None:
        with raw(scratch) as db:
            db.execute("SET session_replication_role = replica")
            db.execute("INSERT INTO auth_group (name) VALUES ('as a replica')")

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, writes)

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("as a replica",)]


@postgresql_only
def test_a_second_operators_restore_db_between_the_dump_and_the_freeze_is_not_undone(scratch: Scratch):
    """restore_db by another operator while deploy_safe waits before the freeze: the data at the
    freeze is the restored backup's, with a row added after it was taken."""
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('in the other backup')")
    other = scratch.directory / "other.backup"
    assert scratch.manage("backup_db", "--output", str(other)).returncode == 0
    execute(scratch, "DELETE FROM auth_group")

    def restore() -> None:
        restored = scratch.manage("restore_db", str(other), "--yes")
        assert restored.returncode == 0, restored.stdout + restored.stderr

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, restore)

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("in the other backup",)]


def test_a_second_operators_restore_db_between_the_copy_and_the_freeze_is_not_undone(scratch: Scratch):
    if is_postgresql():
        pytest.skip("test_a_second_operators_restore_db_between_the_dump_and_the_freeze_is_not_undone")
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('in the other backup')")
    other = scratch.directory / "other.sqlite3"
    made = scratch.manage("backup_db", "--output", str(other))
    assert made.returncode == 0, made.stderr
    execute(scratch, "DELETE FROM auth_group")

    def restore() -> None:
        restored = scratch.manage("restore_db", str(other), "--yes")
        assert restored.returncode == 0, restored.stdout + restored.stderr

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, restore)

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("in the other backup",)]


def test_nothing_deploy_safe_installs_is_left_enabled_after_a_restore(scratch: Scratch):
    result = gated_deploy(
        scratch, "halfway", BEFORE_THE_FREEZE,
        lambda: execute(scratch, "INSERT INTO auth_group (name) VALUES ('x')"),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    if is_postgresql():
        left = query(
            scratch,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'deployguard%' AND tgenabled <> 'D'",
        )
        assert left == [(0,)]
        assert query(scratch, "SELECT count(*) FROM deployguard_written_log") == [(0,)]
    else:
        names = {name for (name,) in query(scratch, "SELECT name FROM sqlite_master")}
        assert not {n for n in names if n.startswith("deployguard_written")}, names


def test_a_table_altered_between_the_copy_and_the_freeze_is_restored_as_at_the_freeze(scratch: Scratch):
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('before')")

    def alter() -> None:
        execute(
            scratch,
            "ALTER TABLE auth_group ADD COLUMN red_note varchar(20) NULL",
            "INSERT INTO auth_group (name, red_note) VALUES ('after', 'altered')",
        )

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, alter)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored_because" in steps_of(scratch)["roll back"]["detail"]
    assert sorted(query(scratch, "SELECT name, red_note FROM auth_group")) == [
        ("after", "altered"),
        ("before", None),
    ]


@sqlite_only
def test_analyze_between_the_copy_and_the_freeze_is_restored_as_at_the_freeze(scratch: Scratch):
    execute(scratch, "ANALYZE")
    execute(scratch, *[f"INSERT INTO auth_group (name) VALUES ('g{n}')" for n in range(20)])  # noqa: S608
    at_freeze: list[Any] = []

    def analyze() -> None:
        execute(scratch, "ANALYZE")
        at_freeze.extend(query(scratch, "SELECT * FROM sqlite_stat1 ORDER BY 1, 2"))

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, analyze)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored_because" in steps_of(scratch)["roll back"]["detail"]
    assert query(scratch, "SELECT * FROM sqlite_stat1 ORDER BY 1, 2") == at_freeze


@pytest.mark.parametrize("kill_at", ["backup proved at the freeze", "migrate", "roll back"])
def test_a_deploy_killed_after_writes_since_the_copy_is_recovered_to_the_data_at_the_freeze(
    scratch: Scratch, kill_at: str
):
    execute(scratch, "INSERT INTO auth_group (name) VALUES ('in the copy')")

    def writes() -> None:
        execute(
            scratch,
            "INSERT INTO auth_group (name) VALUES ('after the copy')",
            "UPDATE auth_user SET last_name = 'after the copy' WHERE username = 'editor'",
        )

    killed = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, writes, DEPLOY_TEST_KILL_AT=kill_at)
    assert killed.returncode == -9, killed.stdout + killed.stderr

    recovered = scratch.deploy("--recover", apps="halfway")

    assert recovered.returncode in (0, 1), recovered.stdout + recovered.stderr
    assert sorted(query(scratch, "SELECT name FROM auth_group")) == [("after the copy",), ("in the copy",)]
    assert query(scratch, "SELECT last_name FROM auth_user WHERE username = 'editor'") == [
        ("after the copy",)
    ]
    assert not writes_tracked(scratch), "the write tracking was left installed"
    assert not [p.name for p in scratch.backup_dir.glob(".*")], "a temporary copy was left behind"
    assert not scratch.inspect()["deploy_mode"]


def test_a_table_with_a_generated_column_written_since_the_copy_is_restored_as_at_the_freeze(
    scratch: Scratch,
):
    """Django 5's GeneratedField: a column SQLite computes, which `INSERT ... SELECT *` cannot fill."""
    generated = (
        "b integer GENERATED ALWAYS AS (a * 2) VIRTUAL"
        if not is_postgresql()
        else "b integer GENERATED ALWAYS AS (a * 2) STORED"
    )
    execute(scratch, f"CREATE TABLE red_generated (id integer PRIMARY KEY, a integer NOT NULL, {generated})")
    execute(scratch, "INSERT INTO red_generated (id, a) VALUES (1, 1)")

    result = gated_deploy(
        scratch, "halfway", BEFORE_THE_FREEZE,
        lambda: execute(scratch, "INSERT INTO red_generated (id, a) VALUES (2, 2)"),
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored_because" in steps_of(scratch)["roll back"]["detail"]
    assert query(scratch, "SELECT id, a, b FROM red_generated ORDER BY id") == [(1, 1, 2), (2, 2, 4)]


def test_a_second_operators_recover_during_a_deploy_is_refused_and_takes_nothing_away(scratch: Scratch):
    seen: list[Any] = []

    def recover() -> None:
        execute(scratch, "INSERT INTO auth_group (name) VALUES ('before the recover')")
        other = scratch.deploy("--recover", apps="halfway")
        seen.append((other.returncode, other.stdout + other.stderr, writes_tracked(scratch)))
        execute(scratch, "INSERT INTO auth_group (name) VALUES ('after the recover')")

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, recover)

    returncode, output, tracked = seen[0]
    assert returncode != 0, output
    assert tracked, "the other operator's --recover took the write tracking away mid-deploy"
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(query(scratch, "SELECT name FROM auth_group")) == [
        ("after the recover",),
        ("before the recover",),
    ]


@sqlite_only
@pytest.mark.skipif("shutil.which('sqlite3') is None", reason="the sqlite3 shell")
@pytest.mark.xfail(strict=True, reason=TRIGGERLESS)
def test_a_write_by_the_sqlite3_shell_with_triggers_off_between_the_copy_and_the_freeze_is_restored(
    scratch: Scratch,
):
    """The sqlite3 shell's `.dbconfig enable_trigger off` (SQLITE_DBCONFIG_ENABLE_TRIGGER) turns
    every trigger off for its own connection: no count moves, and nothing in sqlite_master says so."""

    def shell_write() -> None:
        subprocess.run(
            ["sqlite3", sqlite_path(scratch), ".timeout 60000", ".dbconfig enable_trigger off",
             "UPDATE auth_user SET last_name = 'by the shell' WHERE username = 'editor'"],
            check=True, capture_output=True,
        )  # fmt: skip

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, shell_write)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored_because" in steps_of(scratch)["roll back"]["detail"]
    assert query(scratch, "SELECT last_name FROM auth_user WHERE username = 'editor'") == [("by the shell",)]


def test_a_transaction_open_across_the_freeze_is_in_the_restored_data_or_the_deploy_stops(scratch: Scratch):
    held: list[Any] = []

    def open_it() -> None:  # after the copy; committed while the freeze goes on
        db = connect_for_another_thread(scratch)
        db.execute("BEGIN")
        db.execute("INSERT INTO auth_group (name) VALUES ('open across the freeze')")
        held.append(db)

    def commit_it() -> None:
        held[0].execute("COMMIT")
        held[0].close()

    result = gated_deploy(
        scratch, "halfway", BEFORE_THE_FREEZE,
        lambda: (open_it(), _commit_when_copied(scratch, commit_it, go="deploy_mode_on.go")),
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert query(scratch, "SELECT name FROM auth_group") == [("open across the freeze",)]
