"""Scratch databases for deploy_safe and backup tests: never the pytest database, which they would restore."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.deployguard.support import BASE_DIR, PYTHON, database_url_for, subprocess_env

TIMEOUT = 90

PUBLISH_LEGITIMATE = """
from documents import services
from tests.factories import EditorFactory
editor = EditorFactory(username="editor")
submission = services.create_submission(
    actor=editor, ml_number="ML-001", title="Deploy-safe publishing", submitted_by="Alice Author"
)
services.approve_submission(actor=editor, submission=submission)
services.publish_submission(actor=editor, submission=submission, reason="The one legitimate document")
"""

INSPECT = """
import json
from deployguard import backup, fingerprints
from deployguard.models import DeployModeState, DeployRecord
from documents.models import PublishedDraft, Submission
print("INSPECT " + json.dumps({
    "fingerprints": fingerprints.current_digests(),
    "migrations": backup.applied_migrations(),
    "deploy_mode": DeployModeState.objects.filter(enabled=True).exists(),
    "deploy_mode_switches": DeployModeState.history.count(),
    "records": {r.deploy_id: r.status for r in DeployRecord.objects.all()},
    "submissions": sorted(Submission.objects.values_list("ml_number", flat=True)),
    "drafts": sorted(PublishedDraft.objects.values_list("name", flat=True)),
}))
"""


ADMINS = "Ops <ops@example.com>"


def mailed_env(scratch: Scratch) -> dict[str, str]:
    """The deploy's mail goes to files in the scratch directory, one per message."""
    outbox = scratch.directory / "outbox"
    outbox.mkdir(exist_ok=True)
    return {"ADMINS": ADMINS, "EMAIL_URL": f"filemail:///{outbox}"}


def is_postgresql() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def server() -> dict[str, Any]:
    return settings.DATABASES["default"]


def admin_connection() -> psycopg.Connection:
    params = server()
    return psycopg.connect(
        dbname="postgres",
        user=params.get("USER") or "postgres",
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or "127.0.0.1",
        port=params.get("PORT") or 5432,
        autocommit=True,
    )


def run_manage(
    url: str, *args: str, settings_module: str = "project.settings", timeout: float = TIMEOUT, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=subprocess_env(
            url, DJANGO_SETTINGS_MODULE=settings_module, DEPLOYGUARD_STATE_CACHE_SECONDS="0", **env
        ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Scratch:
    """A database of its own holding one legitimate, published document, and where its files go."""

    url: str
    directory: Path

    @property
    def backup_dir(self) -> Path:
        return self.directory / "backups"

    @property
    def report_path(self) -> Path:
        return self.directory / "report.json"

    @property
    def log_path(self) -> Path:
        return self.directory / "deploys.log"

    def deploy_args(self, *args: str) -> list[str]:
        return [
            "deploy_safe", "--allow-dirty", "--backup-dir", str(self.backup_dir),
            "--report", str(self.report_path), *args,
        ]  # fmt: skip

    def deploy_env(self, apps: str, **env: str) -> dict[str, str]:
        return {"DEPLOY_TEST_APPS": apps, "DEPLOYGUARD_DEPLOY_LOG": str(self.log_path), **env}

    def deploy(self, *args: str, apps: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return run_manage(
            self.url, *self.deploy_args(*args), settings_module="tests.deploy_apps.settings",
            **self.deploy_env(apps, **env),
        )  # fmt: skip

    def manage(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        # Backups made without a path (restore_db's safety backup) go here, not into the checkout.
        return run_manage(self.url, *args, **{"DEPLOYGUARD_BACKUP_DIR": str(self.backup_dir), **env})

    def inspect(self) -> dict[str, Any]:
        result = run_manage(self.url, "shell", "-c", INSPECT)
        assert result.returncode == 0, result.stderr
        line = next(line for line in result.stdout.splitlines() if line.startswith("INSPECT "))
        return json.loads(line.removeprefix("INSPECT "))

    def report(self) -> dict[str, Any]:
        return json.loads(self.report_path.read_text())


def _prepare(url: str) -> None:
    for args in (("migrate", "--noinput", "-v0"), ("shell", "-c", PUBLISH_LEGITIMATE)):
        result = run_manage(url, *args)
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def scratch_template(tmp_path_factory) -> Iterator[str]:
    """A migrated database with the legitimate document: a file (SQLite) or a template database."""
    if not is_postgresql():
        path = tmp_path_factory.mktemp("deploy-template") / "template.sqlite3"
        _prepare(f"sqlite:///{path}")
        yield str(path)
        return
    name = f"deploysafe_ds_tpl_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        _prepare(database_url_for({**server(), "NAME": name}))
        yield name
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch(scratch_template, tmp_path) -> Iterator[Scratch]:
    if not is_postgresql():
        path = tmp_path / "db.sqlite3"
        shutil.copy(scratch_template, path)
        yield Scratch(url=f"sqlite:///{path}", directory=tmp_path)
        return
    name = f"deploysafe_ds_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{scratch_template}"')
    try:
        yield Scratch(url=database_url_for({**server(), "NAME": name}), directory=tmp_path)
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table_rows(scratch: Scratch, table: str) -> list[tuple[Any, ...]]:
    """Every row of `table`, by primary key: on SQLite the values themselves (bytes for bytes),
    on PostgreSQL each row's md5 over its text form."""
    if not is_postgresql():
        path = scratch.url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()  # noqa: S608
    with psycopg.connect(scratch.url) as db:
        return db.execute(f'SELECT t.id, md5(t::text) FROM "{table}" t ORDER BY 1').fetchall()  # noqa: S608


def manage_with_apps(scratch: Scratch, apps: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py with the deploy test apps installed, outside any deploy."""
    return run_manage(
        scratch.url, *args, settings_module="tests.deploy_apps.settings", DEPLOY_TEST_APPS=apps, **env
    )


def writes_tracked(scratch: Scratch) -> bool:
    """Whether deploy_safe's write tracking is on: SQLite's counting triggers
    (deployguard.written), or PostgreSQL's logging triggers enabled (deployguard.written_pg)."""
    if is_postgresql():
        with psycopg.connect(scratch.url) as db:
            found = db.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'deployguard_written' AND tgenabled <> 'D'"
            ).fetchone()
            return bool(found and found[0])
    path = scratch.url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        found = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'deployguard\\_written%' ESCAPE '\\'"
        )
        return bool(found.fetchone()[0])
