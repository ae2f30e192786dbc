"""backup_db --list and --prune, and restore_db's safety backup, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.utils import timezone

from deployguard.backup import MANIFEST_SUFFIX
from deployguard.management.commands.backup_db import DRY_RUN_DONE
from deployguard.management.commands.restore_db import NOT_CONFIRMED_NO_TERMINAL
from deployguard.models import DeployRecord
from tests.deploy_apps.support import Scratch
from tests.utils import run_command

ADD_GROUP = "from django.contrib.auth.models import Group; Group.objects.create(name='after the backup')"


@pytest.fixture
def backups(transactional_db, tmp_path) -> Path:
    directory = tmp_path / "backups"
    directory.mkdir()
    return directory


def _backup(directory: Path, name: str) -> Path:
    path = directory / name
    _stdout, stderr, status = run_command("backup_db", "--output", str(path))
    assert status == 0, stderr
    return path


def test_list_shows_each_backup_with_time_engine_size_rows_and_whether_it_verifies(backups):
    first, second = _backup(backups, "a.bin"), _backup(backups, "b.bin")
    stdout, stderr, status = run_command("backup_db", "--list", "--dir", str(backups))
    assert (stderr, status) == ("", 0)
    lines = stdout.splitlines()
    assert lines[0] == f"Backups in {backups}, oldest first:"
    assert lines[-1] == "2 backups, every one verified."
    manifest = json.loads(first.with_name(first.name + MANIFEST_SUFFIX).read_text())
    rows = sum(fp["count"] for fp in manifest["fingerprints"].values())
    for line, path in zip(lines[1:3], (first, second), strict=True):
        assert line.endswith(f"  verified                    {path.name}")
        assert f"  {manifest['engine']:<10}  " in line
        assert f"{rows:>9} rows in {len(manifest['fingerprints'])} tables" in line
        assert line.startswith(f"{timezone.localtime():%Y-%m-%d}")


def test_list_names_backups_that_do_not_verify_and_exits_one(backups):
    damaged, gone = _backup(backups, "a.bin"), _backup(backups, "b.bin")
    _backup(backups, "c.bin")
    with damaged.open("ab") as handle:
        handle.write(b"\0")
    gone.unlink()
    (backups / "stray.sqlite3").write_bytes(b"no manifest")

    stdout, stderr, status = run_command("backup_db", "--list", "--dir", str(backups), no_color=True)

    assert (stderr, status) == ("", 1)
    lines = stdout.splitlines()
    assert [line.split("  ")[-1].strip() for line in lines[1:5]] == [
        "stray.sqlite3",
        "a.bin",
        "b.bin",
        "c.bin",
    ]
    assert "incomplete: no manifest" in lines[1]
    assert "checksum differs" in lines[2]
    assert "incomplete: no backup file" in lines[3]
    assert " verified " in lines[4]
    assert (
        lines[-1]
        == "3 of 4 backups cannot be restored as they are (restore_db refuses them); the others verify."
    )


def test_list_of_an_empty_directory_says_so(backups):
    assert run_command("backup_db", "--list", "--dir", str(backups)) == (f"No backups in {backups}.\n", "", 0)


def test_prune_removes_the_oldest_verified_backups_beyond_keep_but_never_a_restore_point(backups):
    oldest, older, old, newest = (_backup(backups, f"{n}.bin") for n in ("1", "2", "3", "4"))
    damaged = _backup(backups, "0-damaged.bin")
    manifest_file = damaged.with_name(damaged.name + MANIFEST_SUFFIX)
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "created_at": "2000-01-01T00:00:00+00:00"}))
    with damaged.open("ab") as handle:
        handle.write(b"\0")
    DeployRecord.objects.create(deploy_id="d-1", started_at=timezone.now(), backup_path=str(oldest))
    before = sorted(p.name for p in backups.iterdir())

    stdout, stderr, status = run_command("backup_db", "--prune", "--keep", "1", "--dir", str(backups))

    assert (stderr, status) == ("", 0)
    lines = stdout.splitlines()
    assert lines[0].startswith("Keeping ") and lines[0].endswith("1.bin  restore point of deploy d-1")
    assert [line.split()[0:2] for line in lines[1:3]] == [["Would", "remove"], ["Would", "remove"]]
    assert [line.split("  ")[-1] for line in lines[1:3]] == ["2.bin", "3.bin"]
    assert lines[3:] == [DRY_RUN_DONE]
    assert sorted(p.name for p in backups.iterdir()) == before

    stdout, stderr, status = run_command(
        "backup_db", "--prune", "--keep", "1", "--dir", str(backups), "--apply"
    )

    assert (stderr, status) == ("", 0)
    assert stdout.splitlines()[-1] == "Removed 2 backups; kept the newest 1."
    assert sorted(p.name for p in backups.iterdir()) == sorted(
        name for name in before if not name.startswith(("2.bin", "3.bin"))
    )
    assert newest.exists() and oldest.exists() and damaged.exists()
    assert not older.exists() and not old.exists()

    stdout, _stderr, status = run_command("backup_db", "--prune", "--keep", "1", "--dir", str(backups))
    assert status == 0
    assert stdout.splitlines()[-1] == "Nothing to prune: 2 backups verified, keeping the newest 1."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--prune",), "--prune needs --keep N, N 1 or more: the newest backup is never pruned."),
        (
            ("--prune", "--keep", "0"),
            "--prune needs --keep N, N 1 or more: the newest backup is never pruned.",
        ),
        (("--list", "--keep", "1"), "--keep and --apply go with --prune."),
        (("--keep", "1"), "--dir, --keep and --apply go with --list or --prune."),
        (
            ("--list", "--output", "x"),
            "--output and --overwrite make a backup; they do not go with --list or --prune.",
        ),
        (("--list", "--prune"), "Error: argument --prune: not allowed with argument --list"),
    ],
)
def test_backup_db_misuse_exits_two(db, args, message):
    assert run_command("backup_db", *args) == ("", f"CommandError: {message}\n", 2)


def test_restore_db_takes_a_verified_safety_backup_first_that_undoes_the_restore(scratch: Scratch):
    path = scratch.directory / "backup.bin"
    assert scratch.manage("backup_db", "--output", str(path)).returncode == 0
    assert scratch.manage("shell", "-c", ADD_GROUP).returncode == 0
    changed = scratch.inspect()

    result = scratch.manage("restore_db", str(path), "--yes")

    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    [safety] = [p for p in scratch.backup_dir.iterdir() if not p.name.endswith(MANIFEST_SUFFIX)]
    assert safety.name.split("-before-restore-")[1]
    assert (
        first
        == f"Safety backup of the current data: {safety} (undo with: manage.py restore_db {safety} --yes)."
    )
    assert second.startswith("Restored ")
    assert scratch.inspect() != changed

    undo = scratch.manage("restore_db", str(safety), "--yes", "--no-safety-backup")
    assert undo.returncode == 0, undo.stderr
    assert scratch.inspect() == changed


def test_restore_db_refuses_when_the_safety_backup_fails_and_touches_nothing(scratch: Scratch):
    path = scratch.directory / "backup.bin"
    assert scratch.manage("backup_db", "--output", str(path)).returncode == 0
    assert scratch.manage("shell", "-c", ADD_GROUP).returncode == 0
    before = scratch.inspect()
    blocker = scratch.directory / "a-file"
    blocker.write_text("")

    result = scratch.manage("restore_db", str(path), "--yes", DEPLOYGUARD_BACKUP_DIR=str(blocker / "sub"))

    assert result.returncode == 1
    assert result.stderr.startswith(
        "CommandError: The safety backup of the current data failed (Cannot write to "
    )
    assert result.stderr.endswith(
        "nothing was restored. Make room in DEPLOYGUARD_BACKUP_DIR, or rerun with --no-safety-backup "
        "to restore without one.\n"
    )
    assert scratch.inspect() == before


def test_restore_db_without_a_terminal_or_yes_exits_one_as_its_help_says(scratch: Scratch):
    path = scratch.directory / "backup.bin"
    assert scratch.manage("backup_db", "--output", str(path)).returncode == 0
    result = scratch.manage("restore_db", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"CommandError: {NOT_CONFIRMED_NO_TERMINAL}\n"
    assert not scratch.backup_dir.exists() or list(scratch.backup_dir.iterdir()) == []


@pytest.mark.parametrize(
    "manifest",
    ["[]", "not json", '{"engine": 1}', None],
    ids=["a-list", "not-json", "wrong-fields", "wrong-types"],
)
def test_list_shows_a_hand_edited_manifest_as_unreadable_and_prune_leaves_it(backups, manifest):
    path = _backup(backups, "a.bin")
    manifest_file = path.with_name(path.name + MANIFEST_SUFFIX)
    if manifest is None:
        written = json.loads(manifest_file.read_text())
        manifest = json.dumps({**written, "fingerprints": ["x"], "created_at": 3})
    manifest_file.write_text(manifest)
    _backup(backups, "b.bin")

    stdout, stderr, status = run_command("backup_db", "--list", "--dir", str(backups))
    assert (stderr, status) == ("", 1)
    assert "unreadable manifest" in stdout.splitlines()[1] and stdout.splitlines()[1].endswith("a.bin")

    stdout, _stderr, status = run_command(
        "backup_db", "--prune", "--keep", "1", "--dir", str(backups), "--apply"
    )
    assert status == 0
    assert stdout == "Nothing to prune: 1 backup verified, keeping the newest 1.\n"
    assert path.exists() and manifest_file.exists()


def test_prune_keeps_a_backup_a_deploy_names_by_a_relative_path(backups):
    named, _newer, _newest = (_backup(backups, f"{n}.bin") for n in ("1", "2", "3"))
    DeployRecord.objects.create(
        deploy_id="d-rel", started_at=timezone.now(), backup_path=f"elsewhere/{named.name}"
    )
    stdout, _stderr, status = run_command(
        "backup_db", "--prune", "--keep", "1", "--dir", str(backups), "--apply"
    )
    assert status == 0
    assert stdout.splitlines()[0].endswith("1.bin  restore point of deploy d-rel")
    assert named.exists()
