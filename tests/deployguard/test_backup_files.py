"""backup_db's files: a backup and its manifest appear together or not at all, and never over another."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from deployguard import backup
from deployguard.backup import MANIFEST_SUFFIX, sha256_of
from tests.deployguard.test_terminal import HOSTILE, RAW, SHOWN
from tests.utils import run_command

ALREADY_THERE = "already exists: choose another --output, or pass --overwrite to replace it."


def _manifest(path: Path) -> dict:
    return json.loads(path.with_name(path.name + MANIFEST_SUFFIX).read_text())


@pytest.fixture
def out(transactional_db, tmp_path) -> Path:
    directory = tmp_path / "backups"
    directory.mkdir()
    return directory


def test_a_backup_that_fails_between_its_manifest_and_its_file_leaves_nothing(out, monkeypatch):
    target = out / "backup.bin"
    link = backup._link

    def disk_full_for_the_file(source: Path, destination: Path) -> None:
        if destination == target:
            # The manifest went first.
            assert destination.with_name(destination.name + MANIFEST_SUFFIX).exists()
            raise OSError(errno.ENOSPC, "No space left on device")
        link(source, destination)

    monkeypatch.setattr(backup, "_link", disk_full_for_the_file)
    stdout, stderr, status = run_command("backup_db", "--output", str(target))
    assert (stdout, status) == ("", 1)
    assert stderr == f"CommandError: Writing {target} failed: No space left on device.\n"
    assert list(out.iterdir()) == []


def test_a_backup_refuses_to_replace_one_already_at_its_path_unless_told(out):
    target = out / "backup.bin"
    assert run_command("backup_db", "--output", str(target))[2] == 0
    first = _manifest(target)

    stdout, stderr, status = run_command("backup_db", "--output", str(target))

    assert (stdout, status) == ("", 1)
    assert stderr == f"CommandError: {target} {ALREADY_THERE}\n"
    assert _manifest(target) == first
    assert sorted(p.name for p in out.iterdir()) == ["backup.bin", "backup.bin.manifest.json"]

    stdout, _stderr, status = run_command("backup_db", "--output", str(target), "--overwrite")
    assert status == 0
    assert stdout.startswith("Backed up ")
    assert _manifest(target)["created_at"] != first["created_at"]
    assert _manifest(target)["sha256"] == sha256_of(target)
    assert sorted(p.name for p in out.iterdir()) == ["backup.bin", "backup.bin.manifest.json"]


def test_a_lone_manifest_at_the_path_is_refused_too(out):
    target = out / "backup.bin"
    target.with_name(target.name + MANIFEST_SUFFIX).write_text("{}")
    _stdout, stderr, status = run_command("backup_db", "--output", str(target))
    assert status == 1
    assert "backup.bin.manifest.json already exists" in stderr
    assert not target.exists()


def test_a_backup_put_in_place_meanwhile_is_not_replaced(out, monkeypatch):
    # Another backup_db took the name after this one checked it: link() refuses, nothing is clobbered.
    target = out / "backup.bin"
    monkeypatch.setattr(backup, "refuse_existing", lambda path: None)
    target.write_bytes(b"another process's backup")
    _stdout, stderr, status = run_command("backup_db", "--output", str(target))
    assert status == 1
    assert target.read_bytes() == b"another process's backup"
    assert sorted(p.name for p in out.iterdir()) == ["backup.bin"]
    assert "File exists" in stderr


def test_a_backup_at_a_hostile_path_is_named_escaped(out):
    target = out / f"backup{HOSTILE.replace('/', '')}"
    stdout, stderr, status = run_command("backup_db", "--output", str(target), no_color=True)
    assert status == 0, stderr
    assert RAW.findall(stdout + stderr) == []
    assert f"backup{SHOWN}" in stdout
