"""File arguments that are not what they should be: refused with exit 2 before they are read, in
bounded memory (a FIFO with no writer, an endless device, a directory, a huge line, not JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deployguard import files
from tests.utils import run_command


@pytest.fixture
def bad_files(tmp_path) -> dict[str, tuple[Path, str]]:
    """Each kind of wrong file, with how the refusal names it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody ever writes: opening it to read would wait for ever
    line = tmp_path / "one-long-line"
    with line.open("w") as out:  # 3 MiB and no newline: one line longer than any baseline's
        out.write("x" * (3 * files.MiB))
    text = tmp_path / "not-json.txt"
    text.write_text("this is not JSON\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00" * 100)
    return {
        "fifo": (fifo, "is a FIFO (named pipe), not a file"),
        "device": (Path("/dev/zero"), "is a character device, not a file"),
        "directory": (tmp_path, "is a directory, not a file"),
        "long line": (line, "has a line longer than 1048576 characters"),
        "not json": (text, "is not a baseline: its first line is not a JSON header"),
        "binary": (binary, "is not UTF-8 text"),
    }


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "long line", "not json", "binary"])
def test_verify_integrity_refuses_a_baseline_that_is_not_one(db, bad_files, kind):
    path, refusal = bad_files[kind]

    _, stderr, status = run_command("verify_integrity", "--baseline", str(path))

    assert status == 2
    assert refusal in stderr
    assert str(path) in stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "not json"])
def test_restore_db_refuses_a_path_that_is_not_a_backup_and_touches_nothing(db, bad_files, kind, tmp_path):
    path, _ = bad_files[kind]

    _, stderr, status = run_command("restore_db", str(path), "--yes")

    assert status == 2, stderr
    assert str(path) in stderr


@pytest.mark.parametrize("manifest_kind", ["fifo", "long line", "not json"])
def test_restore_db_refuses_a_manifest_that_is_not_one(db, bad_files, manifest_kind, tmp_path):
    backup = tmp_path / "backup.sqlite3"
    backup.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    source, _ = bad_files[manifest_kind]
    (tmp_path / "backup.sqlite3.manifest.json").symlink_to(source)

    _, stderr, status = run_command("restore_db", str(backup), "--yes")

    assert status == 2, stderr
    assert "manifest" in stderr


def test_restore_db_refuses_a_file_that_is_not_the_engines_backup(db, tmp_path):
    from django.db import connection

    backup = tmp_path / "backup.bin"
    backup.write_bytes(b"PK\x03\x04 a zip file")
    manifest = {
        "engine": connection.vendor, "database": str(connection.settings_dict["NAME"]), "created_at": "",
        "migrations": {}, "fingerprints": {}, "file": "backup.bin", "size": 1, "sha256": "",
    }  # fmt: skip
    (tmp_path / "backup.bin.manifest.json").write_text(json.dumps(manifest))

    _, stderr, status = run_command("restore_db", str(backup), "--yes")

    assert status == 2, stderr
    assert f"is not a {connection.vendor} backup: it does not begin as backup_db's files do" in stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_deploy_safe_refuses_a_report_path_that_is_not_a_file_before_touching_anything(db, bad_files, kind):
    path, _ = bad_files[kind]

    stdout, stderr, status = run_command("deploy_safe", "--allow-dirty", "--report", str(path))

    assert status == 2, stdout + stderr
    assert f"The report {path} is " in stderr
    assert stdout == ""  # not one step ran


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_deploy_safe_refuses_a_baseline_that_is_not_a_file(db, bad_files, kind):
    path, refusal = bad_files[kind]

    stdout, stderr, status = run_command("deploy_safe", "--allow-dirty", "--baseline", str(path))

    assert status == 2, stdout + stderr
    assert refusal in stderr
