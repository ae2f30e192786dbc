"""The backup taken before the freeze holds exactly the data at the freeze, with writers running
until the freeze refuses them (deployguard.deploy.backup_first)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from deployguard.backup import manifest_path
from tests.deploy_apps.support import PYTHON, Scratch, is_postgresql, writes_tracked
from tests.deployguard.deploy.test_proof_end_to_end import reshape_ready  # noqa: F401 (a fixture)
from tests.deployguard.deploy.test_red_team import BEFORE_THE_FREEZE, gated_deploy, steps_of
from tests.deployguard.support import BASE_DIR, subprocess_env
from tests.waiting import wait_until

# Writes through a raw driver, as another program sharing the database would, one transaction
# at a time: a new group, and the editor's first name, both numbered. Each committed number is
# appended to the log; the first refusal (the freeze) is logged and ends the writer.
WRITER = """
import sys, time
url, log = sys.argv[1], sys.argv[2]
if url.startswith("sqlite:///"):
    import sqlite3
    db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60, isolation_level=None)
    begin, mark, errors = "BEGIN IMMEDIATE", "?", sqlite3.Error
else:
    import psycopg
    db = psycopg.connect(url, autocommit=True)
    begin, mark, errors = "BEGIN", "%s", psycopg.Error
number = 0
with open(log, "a", buffering=1) as out:
    out.write("started\\n")
    while True:
        number += 1
        try:
            db.execute(begin)
            db.execute(f"INSERT INTO auth_group (name) VALUES ({mark})", [f"writer {number}"])
            db.execute(f"UPDATE auth_user SET first_name = {mark} WHERE username = 'editor'", [f"n{number}"])
            db.execute("COMMIT")
        except errors as error:
            out.write("refused " + " ".join(str(error).split()) + "\\n")
            break
        out.write(f"{number}\\n")
        time.sleep(0.002)
"""


def _start_writer(scratch: Scratch) -> tuple[subprocess.Popen[bytes], Path]:
    log = scratch.directory / "writer.log"
    writer = subprocess.Popen([PYTHON, "-c", WRITER, scratch.url, str(log)])
    wait_until(
        lambda: log.exists() and len(log.read_text().splitlines()) > 3,
        "the writer to commit its first writes",
        timeout=60,
    )
    return writer, log


def _query(scratch: Scratch, sql: str) -> list[tuple[object, ...]]:
    if is_postgresql():
        with psycopg.connect(scratch.url) as db:
            return db.execute(sql).fetchall()
    path = scratch.url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def _user_first_name(scratch: Scratch) -> str:
    return str(_query(scratch, "SELECT first_name FROM auth_user WHERE username = 'editor'")[0][0])


def _groups(scratch: Scratch) -> set[str]:
    return {str(name) for (name,) in _query(scratch, "SELECT name FROM auth_group")}


def test_a_rolled_back_deploy_restores_every_write_committed_until_the_freeze(scratch: Scratch):
    writer, log = _start_writer(scratch)
    try:
        result = scratch.deploy(apps="halfway")
        writer.wait(timeout=60)  # it stops at its first refusal: the freeze
    finally:
        writer.kill()
        writer.wait()

    assert result.returncode == 1, result.stdout + result.stderr
    lines = log.read_text().splitlines()
    assert lines[-1].startswith("refused "), lines[-3:]
    committed = [int(line) for line in lines[1:-1]]
    report = scratch.report()
    steps = {step["name"]: step for step in report["steps"]}
    proved = steps["backup proved at the freeze"]["detail"]
    # The writer kept writing after the copy: those tables, and only those, were written since.
    assert {"auth_group", "auth_user"} <= set(proved["written_since_the_copy"]), proved
    tables = {name for name in proved["written_since_the_copy"] if not name.endswith(" (sequence)")}
    assert tables == {"auth_group", "auth_user"}, proved
    assert proved["copied_again"] == "the tables written since"
    if is_postgresql():  # those two dumped again alone, into the dump's delta, and restored from it
        assert proved["delta"]["tables"] == ["auth_group", "auth_user"], proved
        assert Path(proved["delta"]["path"]).name == Path(proved["path"]).name + ".delta"
    assert "restored_because" in steps["roll back"]["detail"]
    # The data restored is the data at the freeze: every committed write, the last included.
    assert _groups(scratch) >= {f"writer {number}" for number in committed}
    assert f"writer {committed[-1] + 1}" not in _groups(scratch)
    assert _user_first_name(scratch) == f"n{committed[-1]}"
    # Outside the window: the copy and its hashing were made while the writer still wrote.
    assert report["freeze_window_s"] < sum(step["seconds"] for step in report["steps"])
    assert not list(scratch.backup_dir.glob(".*")), "a temporary copy was left behind"


def test_the_write_counting_is_gone_after_a_deploy_whatever_its_end(scratch: Scratch):
    assert scratch.deploy(apps="schema").returncode == 0
    assert scratch.deploy(apps="schema,halfway").returncode == 1
    if is_postgresql():
        return  # PostgreSQL proves by row versions: nothing is installed
    names = {str(name) for (name,) in _query(scratch, "SELECT name FROM sqlite_master")}
    assert not {name for name in names if name.startswith("deployguard_written")}, names


def test_a_deploy_with_nothing_written_since_the_copy_keeps_it_as_taken(scratch: Scratch):
    result = scratch.deploy(apps="schema")

    assert result.returncode == 0, result.stderr
    report = scratch.report()
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["backup proved at the freeze"]["detail"]["copied_again"] == "nothing"
    assert (
        steps["backup proved at the freeze"]["detail"]["path"]
        == steps["backup, before the freeze"]["detail"]["path"]
    )
    path = Path(steps["backup, before the freeze"]["detail"]["path"])
    assert report["backup"] == str(path)
    assert json.loads(manifest_path(path).read_text())["deploy_id"] == report["deploy_id"]


START_TRACKING = "from deployguard.deploy import backup_first\nbackup_first.start_counting('default')"


def test_a_backup_taken_while_writes_were_tracked_restores_without_the_tracking(scratch: Scratch):
    assert scratch.manage("shell", "-c", START_TRACKING).returncode == 0
    assert writes_tracked(scratch)
    path = scratch.backup_dir / "tracked.backup"
    assert scratch.manage("backup_db", "--output", str(path)).returncode == 0
    assert scratch.manage("shell", "-c", "from deployguard import written\nwritten.stop()").returncode == 0
    assert not writes_tracked(scratch)

    restored = scratch.manage("restore_db", str(path), "--yes")

    assert restored.returncode == 0, restored.stderr
    assert not writes_tracked(scratch)  # the copy held the tracking, on; the restore took it away


@pytest.mark.skipif("is_postgresql()", reason="SQLite's restore")
def test_a_sqlite_copy_restored_while_frozen_carries_the_freeze(scratch: Scratch):
    """restore_database restores SQLite from a copy carrying the freeze's triggers (frozen_copy)
    while deploy mode is on: frozen from the restore's first instant, not once it is checked again."""
    from deployguard import freeze, freeze_sqlite

    path = scratch.backup_dir / "before.sqlite3"
    assert scratch.manage("backup_db", "--output", str(path)).returncode == 0
    function = freeze_sqlite.FUNCTION_PREFIX + "0" * 32

    copy = freeze_sqlite.frozen_copy(path, function, freeze.is_freezable)
    try:
        with contextlib.closing(sqlite3.connect(copy)) as db:
            triggers = {
                name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            }
            with pytest.raises(sqlite3.OperationalError, match=f"no such function: {function}"):
                db.execute("INSERT INTO auth_group (name) VALUES ('in the gap')")
    finally:
        copy.unlink()
    assert freeze_sqlite.trigger_name("documents_submission", "INSERT") in triggers
    assert freeze_sqlite.trigger_name("deployguard_deploymodestate", "UPDATE") in triggers
    assert not any("django_migrations" in name for name in triggers)  # migrate's bookkeeping
    assert path.exists() and not copy.exists()


@pytest.mark.skipif("not is_postgresql()", reason="PostgreSQL's restore")
def test_a_dump_without_the_freeze_restored_while_frozen_refuses_the_writer_queued_behind_it(
    scratch: Scratch,
):
    """The gap CI found in the dump taken before the freeze: `pg_restore --clean` recreates the
    tables as the dump holds them, unfrozen. A writer queued behind the restore's locks must meet
    the freeze when the restore commits, not write in before it is installed again. The writer is
    the tables' owner, without the freeze's key: the strongest client the freeze refuses."""
    path = scratch.backup_dir / "unfrozen.dump"
    assert scratch.manage("backup_db", "--output", str(path)).returncode == 0  # deploy mode off
    assert scratch.manage("deploy_mode", "on", "--reason", "restore under test").returncode == 0
    groups = _groups(scratch)

    with psycopg.connect(scratch.url) as blocker:
        # Holds the restore at its DROP of auth_group, so the writer below queues behind it.
        blocker.execute("LOCK TABLE auth_group IN ACCESS SHARE MODE")
        restore = subprocess.Popen(
            [PYTHON, str(BASE_DIR / "manage.py"), "restore_db", str(path), "--yes"],
            cwd=BASE_DIR,
            env=subprocess_env(scratch.url, DEPLOYGUARD_BACKUP_DIR=str(scratch.backup_dir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(
            lambda: _waiting_on_auth_group(scratch) >= 1, "the restore to wait for auth_group", timeout=60
        )
        refused: list[BaseException] = []
        writer = threading.Thread(target=_write_a_group, args=(scratch, refused))
        writer.start()
        wait_until(lambda: _waiting_on_auth_group(scratch) >= 2, "the writer to queue behind it", timeout=30)
        blocker.rollback()
    assert restore.wait(timeout=120) == 0, restore.communicate()
    writer.join(timeout=60)

    assert len(refused) == 1 and getattr(refused[0], "sqlstate", None) == "DG001", refused
    assert _groups(scratch) == groups  # nothing written in between
    after = scratch.inspect()
    assert after["deploy_mode"] is True


def _waiting_on_auth_group(scratch: Scratch) -> int:
    """How many sessions wait for a lock on auth_group."""
    found = _query(
        scratch, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'auth_group'::regclass"
    )
    return int(found[0][0])  # type: ignore[call-overload]


def _write_a_group(scratch: Scratch, refused: list[BaseException]) -> None:
    try:
        with psycopg.connect(scratch.url, autocommit=True) as db:
            db.execute("INSERT INTO auth_group (name) VALUES ('in the gap')")
    except psycopg.Error as error:
        refused.append(error)


# --- PostgreSQL: the tables written between the dump and the freeze, dumped again alone ----------

postgresql_only = pytest.mark.skipif("not is_postgresql()", reason="PostgreSQL's delta: deployguard.delta_pg")


def _execute(scratch: Scratch, *statements: str) -> None:
    with psycopg.connect(scratch.url, autocommit=True) as db:
        for statement in statements:
            db.execute(statement)


@postgresql_only
def test_a_table_written_before_the_freeze_is_compared_by_value_from_the_delta(
    reshape_ready: Scratch,  # noqa: F811 (the fixture imported above)
):
    """A migration that drops a column is proved by comparing every row with the backup's: for a
    table written after the dump, the backup's rows are the delta's, not the dump's."""
    scratch = reshape_ready

    def write() -> None:
        _execute(scratch, "INSERT INTO reshape_item (name, size, obsolete) VALUES ('after the dump', 4, 'z')")

    result = gated_deploy(scratch, "reshape", BEFORE_THE_FREEZE, write, DEPLOY_TEST_RESHAPE="honest")

    assert result.returncode == 0, result.stdout + result.stderr
    proved = steps_of(scratch)["backup proved at the freeze"]["detail"]
    assert proved["copied_again"] == "the tables written since"
    assert proved["delta"]["tables"] == ["reshape_item"], proved
    names = {name for (name,) in _query(scratch, "SELECT name FROM reshape_item")}
    assert names == {"alpha", "beta", "gamma", "after the dump"}


@postgresql_only
def test_a_foreign_key_that_is_not_deferrable_makes_the_whole_dump_again(scratch: Scratch):
    """A table referenced by a foreign key checked at once could not be emptied and reloaded in
    the restore's transaction: then the whole dump is made again, under the freeze."""
    _execute(scratch, "CREATE TABLE outside_reference (group_id integer REFERENCES auth_group (id))")

    def write() -> None:
        _execute(scratch, "INSERT INTO auth_group (name) VALUES ('after the dump')")

    result = gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, write)

    assert result.returncode == 1, result.stdout + result.stderr
    proved = steps_of(scratch)["backup proved at the freeze"]["detail"]
    assert proved["copied_again"] == "everything" and "delta" not in proved, proved
    assert "after the dump" in _groups(scratch)  # restored from the dump made at the freeze


@postgresql_only
def test_a_backup_whose_delta_is_missing_or_changed_is_refused_whole(scratch: Scratch):
    def write() -> None:
        _execute(scratch, "INSERT INTO auth_group (name) VALUES ('after the dump')")

    assert gated_deploy(scratch, "halfway", BEFORE_THE_FREEZE, write).returncode == 1
    proved = steps_of(scratch)["backup proved at the freeze"]["detail"]
    path, delta = Path(proved["path"]), Path(proved["delta"]["path"])
    _execute(scratch, "DELETE FROM auth_group")

    listed = scratch.manage("backup_db", "--list", "--dir", str(scratch.backup_dir))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert delta.name not in listed.stdout  # part of its backup, not a backup of its own
    restored = scratch.manage("restore_db", str(path), "--yes", "--no-safety-backup")
    assert restored.returncode == 0, restored.stderr
    assert "after the dump" in _groups(scratch)  # from the delta: the dump was taken before it

    with delta.open("ab") as damaged:
        damaged.write(b"\0")
    refused = scratch.manage("restore_db", str(path), "--yes", "--no-safety-backup")
    assert refused.returncode == 1
    assert f"{delta}, the delta of {path}, does not match its manifest" in refused.stderr
    assert scratch.manage("backup_db", "--list", "--dir", str(scratch.backup_dir)).returncode == 1

    delta.unlink()
    refused = scratch.manage("restore_db", str(path), "--yes", "--no-safety-backup")
    assert refused.returncode == 1
    assert "the backup is incomplete; use another backup." in refused.stderr
