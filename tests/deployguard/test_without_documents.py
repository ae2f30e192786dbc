"""deployguard in a project without the documents app (tests/without_documents: a shelf of books
and its own integrity rule): check, migrate, deploy mode, verify_integrity and deploy_safe all
work, each run as an operator would, in a process of its own."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy_apps.support import admin_connection, database_url_for, is_postgresql, run_manage, server

SETTINGS = "tests.without_documents.settings"
ADD_BOOK = (
    "from tests.without_documents.shelf.models import Book; Book.objects.create(title='{title}', author='A')"
)
TABLES = (
    "from django.db import connection; "
    "print('TABLES ' + ' '.join(sorted(connection.introspection.table_names())))"
)


@pytest.fixture
def bare(tmp_path) -> Iterator[str]:
    """An empty database of the test's own: a file, or a PostgreSQL database."""
    if not is_postgresql():
        yield f"sqlite:///{tmp_path / 'shelf.sqlite3'}"
        return
    name = f"deploysafe_nodocs_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url_for({**server(), "NAME": name})
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_manage(url, *args, settings_module=SETTINGS, **env)


@pytest.fixture
def shelf(bare) -> str:
    """The project migrated, with one book on its shelf."""
    migrated = manage(bare, "migrate", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    added = manage(bare, "shell", "-c", ADD_BOOK.format(title="Emma"))
    assert added.returncode == 0, added.stderr
    return bare


def books(url: str) -> list[str]:
    listed = manage(
        url, "shell", "-c",
        "from tests.without_documents.shelf.models import Book; "
        "print('BOOKS ' + '|'.join(Book.objects.order_by('pk').values_list('title', flat=True)))",
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("BOOKS "))
    return [title for title in line.removeprefix("BOOKS ").split("|") if title]


def test_check_and_migrate_need_nothing_of_documents(bare):
    checked = manage(bare, "check")
    migrated = manage(bare, "migrate", "--noinput", "-v0")
    tables = manage(bare, "shell", "-c", TABLES)

    assert (checked.returncode, checked.stdout.strip()) == (
        0,
        "System check identified no issues (0 silenced).",
    )
    assert migrated.returncode == 0, migrated.stderr
    listed = next(line for line in tables.stdout.splitlines() if line.startswith("TABLES ")).split()[1:]
    assert {"deployguard_deploymodestate", "deployguard_deployrecord", "shelf_book"} <= set(listed)
    assert not [table for table in listed if table.startswith("documents_")]


def test_deploy_mode_freezes_the_shelf_until_it_is_turned_off(shelf):
    switched_on = manage(shelf, "deploy_mode", "on", "--reason", "Release 42")
    status = manage(shelf, "deploy_mode", "status", "--format", "json")
    refused = manage(shelf, "shell", "-c", ADD_BOOK.format(title="Written while frozen"))

    assert switched_on.returncode == 0, switched_on.stderr
    assert json.loads(status.stdout)["enabled"] is True
    assert refused.returncode != 0
    assert 'DeployModeActive: Deploy mode is on: INSERT on "shelf_book" refused.' in refused.stderr
    assert books(shelf) == ["Emma"]

    switched_off = manage(shelf, "deploy_mode", "off")
    added = manage(shelf, "shell", "-c", ADD_BOOK.format(title="Persuasion"))

    assert switched_off.returncode == 0, switched_off.stderr
    assert json.loads(manage(shelf, "deploy_mode", "status", "--format", "json").stdout)["enabled"] is False
    assert added.returncode == 0, added.stderr
    assert books(shelf) == ["Emma", "Persuasion"]


def test_verify_integrity_runs_the_shelf_s_own_rule(shelf):
    clean = manage(shelf, "verify_integrity", "--format", "json")
    assert manage(shelf, "shell", "-c", ADD_BOOK.format(title="")).returncode == 0
    broken = manage(shelf, "verify_integrity", "--format", "json")

    assert clean.returncode == 0, clean.stderr
    assert [(rule["id"], rule["count"]) for rule in json.loads(clean.stdout)["rules"]] == [("shelf.E001", 0)]
    assert broken.returncode == 1
    assert [(rule["id"], rule["count"]) for rule in json.loads(broken.stdout)["rules"]] == [("shelf.E001", 1)]


def _deploy(url: str, directory: Path, apps: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = directory / f"report-{apps.rsplit('.', 1)[-1]}.json"
    result = manage(
        url, "deploy_safe", "--allow-dirty", "--backup-dir", str(directory / "backups"),
        "--report", str(report),
        WITHOUT_DOCUMENTS_APPS=apps, DEPLOYGUARD_DEPLOY_LOG=str(directory / "deploys.log"),
    )  # fmt: skip
    return result, json.loads(report.read_text())


def test_deploy_safe_deploys_a_schema_change_and_rolls_back_a_data_migration(shelf, tmp_path):
    deployed, report = _deploy(shelf, tmp_path, "tests.deploy_apps.schema")

    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert report["status"] == "succeeded"
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["pre-check: integrity"]["detail"] == {"shelf.E001": 0}
    assert steps["post-check: fingerprints"]["status"] == "ok"

    seeded, report = _deploy(shelf, tmp_path, "tests.deploy_apps.schema,tests.without_documents.seed")

    assert seeded.returncode == 1, seeded.stdout + seeded.stderr
    assert report["status"] == "rolled_back"
    assert any(
        writer["exception"] == "DeployModeActive"
        and "without_documents/seed/migrations/0001_seed_books.py" in writer["where"]
        for writer in report["blocked_writes"]
    ), report["blocked_writes"]
    assert books(shelf) == ["Emma"]
    assert json.loads(manage(shelf, "deploy_mode", "status", "--format", "json").stdout)["enabled"] is False
