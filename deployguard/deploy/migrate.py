"""`migrate` in a subprocess of its own: started frozen as soon as deploy mode is on, told to go
once the backup is made, and read back (what it refused, what a named data migration changed).

The subprocess is `manage.py deploy_safe_migrate`; what passes between it and deploy_safe is
deployguard.deploy.child's. It dies with deploy_safe (Linux), so a killed deploy never leaves
a migrate running.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from deployguard.deploy.child import (
    DATA_MIGRATION_REPORT_VARIABLE,
    DATA_MIGRATION_VARIABLE,
    MIGRATE_GO,
    REFUSALS_REPORT_VARIABLE,
    SCHEMA_CHANGES_VARIABLE,
)
from deployguard.deploy.steps import Output
from deployguard.deploy.writers import parse_writers
from deployguard.origin import DEPLOY_ID_VARIABLE

DISCARD_TIMEOUT = 30  # seconds an untold subprocess gets to stop before it is killed


def pending_migrations(*, using: str = "default", app: str | None = None) -> list[str]:
    """The migrations `migrate` would apply (of `app` only, when given), as APP.NAME."""
    executor = MigrationExecutor(connections[using])
    targets = [node for node in executor.loader.graph.leaf_nodes() if app is None or node[0] == app]
    return [f"{m.app_label}.{m.name}" for m, backwards in executor.migration_plan(targets) if not backwards]


def recordable_migrations(*, using: str = "default") -> set[str]:
    """What `migrate` may record in django_migrations now (APP.NAME): the pending migrations, and
    the ones each pending squash replaces (it records those, then itself)."""
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    names = set()
    for migration, backwards in plan:
        if not backwards:
            names.add(f"{migration.app_label}.{migration.name}")
            names |= {f"{app}.{name}" for app, name in migration.replaces}
    return names


def _die_with_parent() -> None:
    """preexec_fn: the subprocess gets SIGKILL when deploy_safe dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def schema_changes_reason(deploy_id: str) -> str:
    return f"deploy_safe {deploy_id}: migrate"


def manage_command(
    *args: str,
    deploy_id: str,
    verbosity: int,
    extra: dict[str, str] | None = None,
    schema_changes: bool = True,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a `manage.py` subprocess of this deploy; with
    `schema_changes`, one allowed to change the schema from its start-up on."""
    manage_py = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0].endswith("manage.py") else None
    if manage_py is None or not manage_py.exists():
        manage_py = Path(settings.BASE_DIR) / "manage.py"
    env = {**os.environ, DEPLOY_ID_VARIABLE: deploy_id, **(extra or {})}
    env.pop(SCHEMA_CHANGES_VARIABLE, None)
    if schema_changes:
        env[SCHEMA_CHANGES_VARIABLE] = schema_changes_reason(deploy_id)
    return [sys.executable, str(manage_py), *args, f"--verbosity={verbosity}"], env


def bootstrap(*, deploy_id: str, verbosity: int) -> str:
    """Create deployguard's own tables (`migrate deployguard`), frozen (DEPLOYMENT_MODE=true):
    schema and bookkeeping only. Returns why it failed, or ""."""
    command, env = manage_command(
        "migrate", "deployguard", "--noinput", deploy_id=deploy_id, verbosity=verbosity,
        extra={"DEPLOYMENT_MODE": "true"},
    )  # fmt: skip
    result = subprocess.run(  # noqa: S603
        command, env=env, capture_output=True, text=True, check=False, preexec_fn=_die_with_parent
    )
    if result.returncode != 0:
        return f"Could not create deployguard's tables: {result.stderr.strip()[-400:]}"
    return ""


@dataclass
class Child:
    """The migrate subprocess, and the files it reports to."""

    process: subprocess.Popen[str]
    refusals_report: str
    data_report: str = ""


def start(*, deploy_id: str, using: str, verbosity: int, allow_data_migrations: list[str]) -> Child:
    """Start the migrate subprocess, which starts up and then waits to be told to go.

    Called once deploy mode is on in the shared state, so the subprocess reads "on" from its
    first check and every ready() hook in it runs frozen, schema changes and migrate's
    bookkeeping rows included: it allows those only once told to go. Its start-up (a second
    Django start-up, about a second) then overlaps the drain and the backup's proof at the
    freeze, none of which it touches: it writes nothing until told to go.
    """
    handle, refusals = tempfile.mkstemp(prefix="deploy_safe-refused-", suffix=".jsonl")
    os.close(handle)
    extra: dict[str, str] = {REFUSALS_REPORT_VARIABLE: refusals}
    data = ""
    if allow_data_migrations:
        handle, data = tempfile.mkstemp(prefix="deploy_safe-data-", suffix=".jsonl")
        os.close(handle)
        extra |= {
            DATA_MIGRATION_VARIABLE: ",".join(allow_data_migrations),
            DATA_MIGRATION_REPORT_VARIABLE: data,
        }
    # Not allowed schema changes from start-up: it starts up while the backup is proved, so it
    # starts fully frozen, and allows schema changes once told to go.
    reason = schema_changes_reason(deploy_id)
    command, env = manage_command(
        "deploy_safe_migrate", "--database", using, "--schema-changes-reason", reason,
        deploy_id=deploy_id, verbosity=verbosity, extra=extra, schema_changes=False,
    )  # fmt: skip
    process = subprocess.Popen(  # noqa: S603
        command,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    return Child(process, refusals, data)


def discard(child: Child) -> None:
    """End a subprocess that was never told to go (closing its input stops it unmigrated), and
    remove its report files. Nothing happens to one that has finished."""
    if child.process.returncode is None:
        try:
            child.process.communicate(timeout=DISCARD_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.communicate()
    for path in (child.refusals_report, child.data_report):
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


@dataclass
class Migrated:
    """What the migrate subprocess did: its step's detail, who tried to write, the rows a
    named data migration changed, and why the deploy fails (or "")."""

    detail: dict[str, Any]
    recordable: set[str] = field(default_factory=set)  # what it may record in django_migrations
    writers: list[dict[str, str]] = field(default_factory=list)
    data_changes: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def go(child: Child, *, using: str, verbosity: int, output: Output) -> Migrated:
    """Tell the subprocess to go and wait for it; what it did, and the failure in one line."""
    migrated = Migrated(
        {"pending": pending_migrations(using=using), "subprocess_started": "while deploy mode went on"},
        recordable=recordable_migrations(using=using),
    )
    stdout, stderr = child.process.communicate(input=f"{MIGRATE_GO}\n")
    returncode = child.process.returncode
    connections[using].close()  # the schema changed under this connection
    migrated.detail["exit_status"] = returncode
    if verbosity >= 2 and stdout:
        output("", stdout.rstrip())
    if child.data_report:
        migrated.data_changes = _read_data_changes(child.data_report)
        migrated.detail["data_migration_changes"] = migrated.data_changes
    refused = _read_refusals(child.refusals_report)
    if returncode == 0 and refused:
        # The code that tried caught the refusal: migrate "succeeded", but this release
        # tries to write during deploys. Named, rolled back and alerted like any other.
        migrated.writers = refused
        migrated.detail["errors"] = refused
        places = sorted({w["where"] or "?" for w in refused})
        migrated.problem = (
            f"migrate tried {len(refused)} write(s) that deploy mode refused and the code caught: "
            + "; ".join(places)[:600]
        )
    elif returncode != 0:
        writers = parse_writers(stderr, Path(settings.BASE_DIR).resolve())
        named = {(w["where"], w["message"]) for w in writers}
        writers += [w for w in refused if (w["where"], w["message"]) not in named]
        migrated.writers = writers
        migrated.detail["errors"] = writers
        migrated.detail["stderr_tail"] = stderr.strip().splitlines()[-5:]
        blocked = [w for w in writers if w["exception"] == "DeployModeActive"]
        if blocked or writers:
            first = (blocked or writers)[-1]
            migrated.problem = (
                f"migrate failed: {first['exception']} at {first['where'] or '?'}: {first['message'][:300]}"
            )
        else:
            last = stderr.strip().splitlines()[-1:] or [""]
            migrated.problem = f"migrate exited {returncode}" + (f": {last[0][:300]}" if last[0] else "")
    return migrated


def _read_data_changes(path: str) -> dict[str, Any]:
    """{migration: its changes}, as child.install_data_migration_allowance reported them."""
    changes: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            entry = json.loads(line)
            changes[entry["migration"]] = entry["changes"]
    return changes


def _read_refusals(path: str) -> list[dict[str, str]]:
    """The refusals the subprocess recorded (child.install_refusal_report)."""
    try:
        with open(path, encoding="utf-8") as report:
            return [json.loads(line) for line in report if line.strip()]
    except (OSError, ValueError):
        return []
