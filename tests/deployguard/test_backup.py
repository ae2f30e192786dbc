"""backup_db and restore_db against a scratch database, in subprocesses as an operator runs them."""

from __future__ import annotations

import json
import os

import pytest

from tests.deploy_apps.support import Scratch

ADD_GROUP = "from django.contrib.auth.models import Group; Group.objects.create(name='after the backup')"


def backed_up(scratch: Scratch):
    path = scratch.directory / "backup.bin"
    result = scratch.manage("backup_db", "--output", str(path))
    assert result.returncode == 0, result.stderr
    assert "Backed up" in result.stdout
    return path


def test_a_backup_restores_the_data_exactly_and_says_so(scratch: Scratch):
    before = scratch.inspect()
    path = backed_up(scratch)
    assert (
        json.loads(path.with_name(path.name + ".manifest.json").read_text())["fingerprints"]
        == before["fingerprints"]
    )
    assert scratch.manage("shell", "-c", ADD_GROUP).returncode == 0
    assert scratch.inspect()["fingerprints"] != before["fingerprints"]

    result = scratch.manage("restore_db", str(path), "--yes")

    assert result.returncode == 0, result.stderr
    assert "fingerprints of" in result.stdout
    assert scratch.inspect() == before


def test_a_corrupted_backup_is_refused_and_nothing_changes(scratch: Scratch):
    path = backed_up(scratch)
    assert scratch.manage("shell", "-c", ADD_GROUP).returncode == 0
    with path.open("ab") as damaged:
        damaged.write(b"\0garbage")
    before = scratch.inspect()

    result = scratch.manage("restore_db", str(path), "--yes")

    assert result.returncode == 1
    assert "does not match its manifest" in result.stderr
    assert scratch.inspect() == before


def test_a_backup_whose_manifest_names_another_engine_is_refused(scratch: Scratch):
    path = backed_up(scratch)
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    other = "postgresql" if manifest["engine"] == "sqlite" else "sqlite"
    manifest_path.write_text(json.dumps({**manifest, "engine": other}))
    before = scratch.inspect()

    result = scratch.manage("restore_db", str(path), "--yes")

    assert result.returncode == 1
    assert f"is a {other} backup" in result.stderr
    assert scratch.inspect() == before


def test_an_unwritable_output_fails_with_exit_1_and_leaves_nothing(scratch: Scratch):
    blocker = scratch.directory / "a-file"
    blocker.write_text("")

    result = scratch.manage("backup_db", "--output", str(blocker / "backup.bin"))

    assert result.returncode == 1
    assert "Cannot write to" in result.stderr
    assert blocker.read_text() == ""


def test_a_backup_takes_no_busy_timeout_and_leaves_json_support_detected(scratch: Scratch):
    # Django's first JSON-support probe opens a transaction; under the backup's lock it used to
    # wait out the whole busy timeout (20 s) and then cache "no JSON support" for the process.
    program = (
        "import time; from pathlib import Path; from django.db import connection; "
        "from deployguard import backup; started = time.monotonic(); "
        f"backup.backup_database(Path({str(scratch.backup_dir / 'probe')!r})); "
        "print('PROBE', connection.features.supports_json_field, round(time.monotonic() - started, 1))"
    )

    result = scratch.manage("shell", "-c", program)

    assert result.returncode == 0, result.stderr
    supported, seconds = result.stdout.split("PROBE ")[1].split()[:2]
    assert supported == "True"
    assert float(seconds) < 10


@pytest.mark.postgresql
def test_a_failed_pg_dump_fails_the_backup_with_its_message_and_leaves_nothing(scratch: Scratch):
    # pg_dump runs while the fingerprints are taken; its failure must still end the backup.
    tools = scratch.directory / "bin"
    tools.mkdir()
    fake = tools / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump: error: the disk is on fire' >&2\nexit 1\n")
    fake.chmod(0o755)
    output = scratch.directory / "out"
    output.mkdir()

    result = scratch.manage(
        "backup_db", "--output", str(output / "backup.dump"), PATH=f"{tools}{os.pathsep}{os.environ['PATH']}"
    )

    assert result.returncode == 1
    assert "pg_dump failed: pg_dump: error: the disk is on fire" in result.stderr
    assert list(output.iterdir()) == []


# A restore while frozen goes through psql, the freeze installed again in the same transaction
# (backup._restore_through_psql): when either tool fails, nothing of the restore is committed.
VERIFY_FREEZE = (
    "from django.db import connection\nfrom deployguard import freeze\nprint(freeze.verify(connection))"
)
FAILING_TOOLS = {
    # Half of pg_restore's SQL (its DROPs included), then a failure.
    "pg_restore": (
        '#!/bin/sh\n"$REAL_TOOL" "$@" | head -c 3000\n'
        'echo "pg_restore: error: the disk is on fire" >&2\nexit 1\n'
    ),
    # psql meets an error just before COMMIT.
    "psql": '#!/bin/sh\nsed "s/^COMMIT;$/SELECT 1 \\/ 0;/" | "$REAL_TOOL" "$@"\n',
}


@pytest.mark.postgresql
@pytest.mark.parametrize("tool", sorted(FAILING_TOOLS))
def test_a_restore_while_frozen_that_fails_halfway_changes_nothing_and_stays_frozen(
    scratch: Scratch, tool: str
):
    import shutil

    path = backed_up(scratch)
    assert scratch.manage("deploy_mode", "on", "--reason", "restore under test").returncode == 0
    before = scratch.inspect()
    tools = scratch.directory / "bin"
    tools.mkdir()
    fake = tools / tool
    fake.write_text(FAILING_TOOLS[tool])
    fake.chmod(0o755)

    result = scratch.manage(
        "restore_db", str(path), "--yes", "--no-safety-backup",
        PATH=f"{tools}{os.pathsep}{os.environ['PATH']}", REAL_TOOL=str(shutil.which(tool)),
    )  # fmt: skip

    assert result.returncode == 4, result.stdout + result.stderr
    expected = {
        "pg_restore": "failed: pg_restore failed: pg_restore: error: the disk is on fire",
        "psql": "failed: psql failed: ERROR:  division by zero",
    }[tool]
    assert expected in result.stderr, result.stderr
    assert scratch.inspect() == before
    verified = scratch.manage("shell", "-c", VERIFY_FREEZE)
    assert verified.stdout.strip().splitlines()[-1] == "[]", (
        verified.stdout + verified.stderr
    )  # frozen, whole


HOSTILE_REASONS = [
    "$row$; DROP TABLE auth_group; --",  # ends a dollar quote of a fixed tag
    "$$ END; $$; DELETE FROM auth_user; --",
    "'); DELETE FROM auth_user; --",
    "deploy 🚀 «ünïcode» \\ back\\slash \" ' ; E'\\x27'",
]
READ_REASON = (
    "from deployguard.models import DeployModeState\nprint(repr(DeployModeState.objects.get().reason))"
)


@pytest.mark.postgresql
@pytest.mark.parametrize("reason", HOSTILE_REASONS)
def test_a_restore_while_frozen_writes_the_deploy_mode_row_as_it_was_whatever_its_reason_holds(
    scratch: Scratch, reason: str
):
    """The frozen restore's transaction writes the deploy-mode row from text an operator typed: it
    is data, never SQL."""
    path = backed_up(scratch)
    assert scratch.manage("deploy_mode", "on", "--reason", reason).returncode == 0
    before = scratch.inspect()

    result = scratch.manage("restore_db", str(path), "--yes", "--no-safety-backup")

    assert result.returncode == 0, result.stderr
    assert scratch.inspect() == before
    assert scratch.manage("shell", "-c", READ_REASON).stdout.strip().splitlines()[-1] == repr(reason)
    verified = scratch.manage("shell", "-c", VERIFY_FREEZE)
    assert verified.stdout.strip().splitlines()[-1] == "[]", verified.stdout + verified.stderr


# --- SQLite's integrity check of the copy, split across cores ---------------------------


def _sqlite_file(path, *statements: str):
    import sqlite3

    connection = sqlite3.connect(path)
    connection.executescript(";\n".join(statements))
    connection.commit()
    connection.close()
    return path


def _quick_check(path) -> list[str]:
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("PRAGMA quick_check")]
    finally:
        connection.close()


def test_the_split_integrity_check_finds_an_index_that_does_not_match_its_table(tmp_path):
    """quick_check, the whole-file part, does not compare index entries with rows: the
    per-table part does, so the split check finds what integrity_check finds."""
    from concurrent.futures import ThreadPoolExecutor

    from deployguard.backup import BackupError, checked_sha256, integrity_problems

    path = _sqlite_file(
        tmp_path / "index.sqlite3",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)",
        "CREATE INDEX t_a ON t (a)",
        "INSERT INTO t (a, b) VALUES ('x1', 'y1'), ('x2', 'y2'), ('x3', 'y3'), ('x4', 'y4')",
        "PRAGMA writable_schema = ON",
        "UPDATE sqlite_schema SET sql = 'CREATE INDEX t_a ON t (b)' WHERE name = 't_a'",
    )
    assert _quick_check(path) == ["ok"]

    expected = [f"row {n} missing from index t_a" for n in range(1, 5)]
    assert integrity_problems(path) == expected
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert integrity_problems(path, pool) == expected
    with pytest.raises(BackupError) as refused:
        checked_sha256(path)
    assert str(refused.value) == (
        "The copy failed SQLite's integrity check: row 1 missing from index t_a; "
        "row 2 missing from index t_a; row 3 missing from index t_a (and 1 more)"
    )


def test_the_split_integrity_check_finds_a_damaged_page_and_passes_a_sound_file(tmp_path):
    from deployguard.backup import checked_sha256, integrity_problems, sha256_of

    path = _sqlite_file(
        tmp_path / "page.sqlite3",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT UNIQUE)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
        "INSERT INTO t (a) SELECT printf('%03d', i) || zeroblob(200) FROM n",
    )
    assert integrity_problems(path) == []
    assert checked_sha256(path) == sha256_of(path)

    with path.open("r+b") as damaged:
        damaged.seek(4 * 4096 + 8)  # page 5: overwrite its cell pointers
        damaged.write(b"\xff" * 64)
    problems = integrity_problems(path)
    assert problems and "On tree page 5 cell 0: Offset 65535 out of range" in problems[0]


def test_the_split_integrity_check_finds_a_page_nothing_uses(tmp_path):
    """Page accounting is the whole-file part's: integrity_check(TABLE) alone passes this file."""
    from deployguard.backup import integrity_problems

    path = _sqlite_file(
        tmp_path / "orphan.sqlite3",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT UNIQUE)",
        "INSERT INTO t (a) VALUES ('x'), ('y')",
    )
    pages = path.stat().st_size // 4096
    with path.open("r+b") as grown:
        grown.seek(0, 2)
        grown.write(bytes(4096))  # one more page, in no b-tree and not on the freelist
        grown.seek(28)  # the header's page count
        grown.write((pages + 1).to_bytes(4, "big"))

    assert integrity_problems(path) == [f"*** in database main ***\nPage {pages + 1} is never used"]


def test_a_copy_of_a_wal_database_is_one_file_in_rollback_journal_mode(tmp_path):
    import sqlite3
    import threading

    from deployguard.backup import copy_sqlite, sha256_of

    source = tmp_path / "live.sqlite3"
    live = sqlite3.connect(source)
    live.execute("PRAGMA journal_mode = WAL")
    live.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    live.execute("INSERT INTO t (a) VALUES ('x')")
    live.commit()
    target = tmp_path / "copies" / "copy.sqlite3"
    target.parent.mkdir()

    digest = copy_sqlite(str(source), target, threading.Event())
    live.close()

    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.sqlite3"]
    assert digest == sha256_of(target)
    copy = sqlite3.connect(target)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert copy.execute("SELECT a FROM t").fetchall() == [("x",)]
    copy.close()


# --- copying(): the caller reads the data while the backup holds it still -----------------------


def test_what_the_caller_reads_inside_the_copy_is_what_the_manifest_records(transactional_db, tmp_path):
    from deployguard import backup, fingerprints

    with backup.copying(tmp_path / "backup.bin") as copy:
        taken = fingerprints.current_digests()
        copy.describe(taken, backup.applied_migrations())

    assert copy.path == tmp_path / "backup.bin"
    assert copy.manifest is not None
    assert copy.manifest.fingerprints == taken
    assert backup.check_backup(copy.path) == copy.manifest
    assert sorted(path.name for path in tmp_path.iterdir()) == ["backup.bin", "backup.bin.manifest.json"]


def test_a_copy_nobody_described_or_whose_reader_failed_leaves_nothing_behind(transactional_db, tmp_path):
    from deployguard import backup

    with pytest.raises(backup.BackupError, match="The backup was not described"):
        with backup.copying(tmp_path / "undescribed.bin"):
            pass
    with pytest.raises(RuntimeError, match="the reader failed"):
        with backup.copying(tmp_path / "abandoned.bin"):
            raise RuntimeError("the reader failed")

    assert list(tmp_path.iterdir()) == []
