"""Driving deploy_safe from reliability tests: in the background, paused or killed at a named
step (tests/deploy_apps/gate), with its mail in files, and the row-hash and record checks."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.deploy_apps.support import (
    BASE_DIR,
    INSPECT,
    PYTHON,
    Scratch,
    database_url_for,
    is_postgresql,
    subprocess_env,
)
from tests.reliability.rows import _SCRIPT as _ROWS_SCRIPT
from tests.reliability.rows import RowHashes, scratch_row_hashes
from tests.waiting import wait_until

ADMINS = "Ops <ops@example.com>"
DEPLOY_SECONDS = 120


def gate_file(scratch: Scratch, step: str, suffix: str) -> Path:
    """As tests/deploy_apps/gate/apps.py names it."""
    return scratch.directory / "gate" / f"{step.replace(' ', '_').replace(':', '')}.{suffix}"


def mailed_env(scratch: Scratch) -> dict[str, str]:
    """The deploy's mail goes to files in the scratch directory, one per message."""
    outbox = scratch.directory / "outbox"
    outbox.mkdir(exist_ok=True)
    return {"ADMINS": ADMINS, "EMAIL_URL": f"filemail:///{outbox}"}


def mails(scratch: Scratch) -> list[str]:
    outbox = scratch.directory / "outbox"
    return [mail.read_text() for mail in sorted(outbox.iterdir())] if outbox.exists() else []


def subjects(scratch: Scratch) -> list[str]:
    return [
        line.removeprefix("Subject: ")
        for mail in mails(scratch)
        for line in mail.splitlines()
        if line.startswith("Subject: ")
    ]


def start_deploy(
    scratch: Scratch,
    *args: str,
    apps: str,
    pause_at: tuple[str, ...] = (),
    kill_at: str = "",
    report: Path | None = None,
    **env: str,
) -> subprocess.Popen[str]:
    """deploy_safe in the background, its output to pipes; gate: pause or kill at named steps."""
    (scratch.directory / "gate").mkdir(exist_ok=True)
    command = scratch.deploy_args(*args)
    if report is not None:
        command[command.index("--report") + 1] = str(report)
    return subprocess.Popen(
        [PYTHON, str(BASE_DIR / "manage.py"), *command],
        cwd=BASE_DIR,
        env=subprocess_env(
            scratch.url,
            DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings",
            DEPLOYGUARD_STATE_CACHE_SECONDS="0",
            DEPLOY_TEST_GATE_DIR=str(scratch.directory / "gate"),
            DEPLOY_TEST_PAUSE_AT=",".join(pause_at),
            DEPLOY_TEST_KILL_AT=kill_at,
            **scratch.deploy_env(apps, **env),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reach(process: subprocess.Popen[str], scratch: Scratch, step: str) -> str:
    """Wait until the deploy reaches `step` (paused or killed there); its deploy id."""
    reached = gate_file(scratch, step, "reached")
    wait_until(lambda: reached.exists() or process.poll() is not None, f"the deploy to reach {step!r}")
    assert reached.exists(), f"the deploy ended (exit {process.returncode}) before {step!r}"
    wait_until(lambda: reached.read_text(), f"the deploy id at {step!r}")
    return reached.read_text()


def release(scratch: Scratch, step: str) -> None:
    gate_file(scratch, step, "go").touch()


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=DEPLOY_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


_STATE = INSPECT + _ROWS_SCRIPT


def state_of(scratch: Scratch) -> tuple[dict[str, Any], RowHashes]:
    """Scratch.inspect() and scratch_row_hashes() in one subprocess: (inspection, row hashes)."""
    result = scratch.manage("shell", "-c", _STATE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    inspected = json.loads(
        next(line for line in lines if line.startswith("INSPECT ")).removeprefix("INSPECT ")
    )
    rows = json.loads(next(line for line in lines if line.startswith("ROWS ")).removeprefix("ROWS "))
    return inspected, {
        table: Counter({int(value): count for value, count in hashes.items()})
        for table, hashes in rows.items()
    }


def peek(scratch: Scratch) -> tuple[bool, list[str]]:
    """(deploy mode on, DeployRecord statuses) read straight from the scratch database: no
    Django start-up, for a look in the middle of a scenario."""
    queries = (
        "SELECT count(*) FROM deployguard_deploymodestate WHERE enabled",
        "SELECT status FROM deployguard_deployrecord ORDER BY started_at",
    )
    if scratch.url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(scratch.url.removeprefix("sqlite:///"))) as db:
            (on,), records = db.execute(queries[0]).fetchone(), db.execute(queries[1]).fetchall()
    else:
        with psycopg.connect(scratch.url.replace("postgres://", "postgresql://", 1)) as db:
            (on,), records = db.execute(queries[0]).fetchone(), db.execute(queries[1]).fetchall()
    return bool(on), [status for (status,) in records]


@pytest.fixture(scope="session")
def template_rows(scratch_template, tmp_path_factory) -> RowHashes:
    """The row hashes every fresh `scratch` starts with, measured once on the database it is
    copied from (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL)."""
    if is_postgresql():
        url = database_url_for({**settings.DATABASES["default"], "NAME": scratch_template})
    else:
        url = f"sqlite:///{scratch_template}"
    return scratch_row_hashes(Scratch(url=url, directory=tmp_path_factory.mktemp("template-rows")))
