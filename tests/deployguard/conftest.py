"""Fixtures for deploy mode: switch it on, snapshot the data, share the database with other processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deployguard import state
from tests.deploy_apps.support import scratch, scratch_template  # noqa: F401 (fixtures)
from tests.deployguard.admin_support import operator, operator_client, staff_client, viewer_client  # noqa: F401
from tests.deployguard.roles_support import two_roles  # noqa: F401 (fixture)
from tests.deployguard.support import database_url_for, manage


@pytest.fixture
def fast_switch(settings):
    """No cache to wait out: the switch takes effect at once in this (the only) process."""
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0


@pytest.fixture
def deploy_mode_on(db) -> state.DeployModeStatus:
    return state.enable(
        reason="Release 42", changed_by="ops@deploy-host", deploy_id="d-42", expected_minutes=10
    )


@pytest.fixture
def deploy_mode_on_committed(transactional_db) -> Iterator[state.DeployModeStatus]:
    """Deploy mode on, committed, so that other threads and processes see it; off afterwards."""
    yield state.enable(reason="Release 42", changed_by="ops@deploy-host")
    state.disable(changed_by="pytest")


@pytest.fixture
def outsider(transactional_db) -> Iterator[psycopg.Connection]:
    """A client deployguard never sees: its own driver connection, no Django, autocommit."""
    from django.db import connection

    with psycopg.connect(database_url_for(connection.settings_dict), autocommit=True) as client:
        yield client


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "migrated.sqlite3"
    manage(f"sqlite:///{path}", "migrate", "--noinput", check=True)
    return path


@pytest.fixture
def shared_database_url(request, tmp_path, transactional_db) -> Iterator[str]:
    """A DATABASE_URL other processes can open, holding this test's data.

    PostgreSQL: the test database itself (the test commits). SQLite: the in-memory test
    database cannot be shared, so a migrated file of its own, seen only by subprocesses.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        yield database_url_for(connection.settings_dict)
        state.disable(changed_by="pytest")
        return
    path = tmp_path / "shared.sqlite3"
    shutil.copy(request.getfixturevalue("migrated_sqlite_file"), path)
    yield f"sqlite:///{path}"
