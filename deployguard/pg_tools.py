"""PostgreSQL's client tools as backups run them: pg_dump, pg_restore and psql, pointed at a
database through libpq's environment, each failure a BackupError told by the tool's own words."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from django.db import connections


class BackupError(Exception):
    """The backup could not be made or proved readable; nothing was left at the target path."""


def postgres_environment(using: str) -> dict[str, str]:
    """The environment that points libpq's tools (pg_dump, pg_restore) at this database."""
    params = connections[using].settings_dict
    env = {**os.environ, "PGDATABASE": str(params["NAME"])}
    for key, variable in (
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
    ):
        if params.get(key):
            env[variable] = str(params[key])
    return env


def executable(name: str) -> str:
    """The path of a PostgreSQL client tool; BackupError when it is not installed."""
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed: install the PostgreSQL client tools.")
    return path


def failed(name: str, returncode: int, output: str) -> BackupError:
    """The tool's failure, told by its last line of error (psql follows its ERROR line with the
    statement's text and a caret, which say less and may quote values)."""
    detail = output.strip().splitlines()
    errors = [line for line in detail if "ERROR:" in line or "error:" in line]
    said = errors[-1] if errors else detail[-1] if detail else f"exit {returncode}"
    return BackupError(f"{name} failed: {said}")


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(  # noqa: S603
        [executable(command[0]), *command[1:]], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise failed(command[0], result.returncode, result.stderr or result.stdout)


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[None]:
    """Run `command` while the block runs, and wait for it after; BackupError when it failed.
    Killed when the block raises."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(  # noqa: S603
            [executable(command[0]), *command[1:]], env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            yield
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.wait() != 0:
            output.seek(0)
            raise failed(command[0], process.returncode, output.read().decode(errors="replace"))
