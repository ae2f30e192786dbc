"""SQLite's authorizer: the guard's rules for SQL that goes around Django's execute wrapper."""

from __future__ import annotations

import sqlite3

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction

import deployguard
from deployguard import allowances, sqlite_authorizer, state
from tests.deployguard.support import snapshot

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="executescript is sqlite3's")


@sqlite_only
def test_executescript_cannot_write_a_protected_table_in_deploy_mode(deploy_mode_on_committed):
    state.disable(changed_by="ops@host")
    Group.objects.create(name="existing")
    state.enable(reason="Release 42", changed_by="ops@host")
    before = snapshot()
    with pytest.raises((DatabaseError, sqlite3.DatabaseError), match="not authorized"):
        with connection.cursor() as cursor:
            cursor.executescript("UPDATE auth_group SET name = 'renamed through executescript';")
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        connection.connection.executescript("DELETE FROM auth_group;")
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        with allowances.allow_schema_changes("test: migrate"):  # the schema, not the rows
            connection.connection.executescript("DELETE FROM auth_group;")
    assert snapshot() == before


@sqlite_only
def test_executescript_is_refused_when_deploymentmode_is_set_in_the_environment(
    transactional_db, monkeypatch
):
    Group.objects.create(name="existing")
    before = snapshot()
    monkeypatch.setenv("DEPLOYMENT_MODE", "true")
    state.clear_cache()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        with connection.cursor() as cursor:
            cursor.executescript("UPDATE auth_group SET name = 'published';")
    monkeypatch.setenv("DEPLOYMENT_MODE", "false")
    state.clear_cache()
    assert snapshot() == before


@sqlite_only
def test_executescript_writes_pass_when_deploy_mode_is_off_or_inside_allow_writes(deploy_mode_on_committed):
    with deployguard.allow_writes("test: a script inside the allowance"):
        connection.connection.executescript("INSERT INTO auth_group (name) VALUES ('allowed');")
    state.disable(changed_by="ops@host")
    assert not state.current().enabled  # read now: the script below is judged on this
    with connection.cursor() as cursor:
        cursor.executescript("INSERT INTO auth_group (name) VALUES ('off');")
    assert sorted(Group.objects.values_list("name", flat=True)) == ["allowed", "off"]


@sqlite_only
def test_the_sqlite_authorizer_lets_the_schema_allowance_rebuild_a_table(db):
    state.enable(reason="Release 42", changed_by="ops@host")
    with allowances.allow_schema_changes("test: migrate"), connection.cursor() as cursor:
        cursor.execute('CREATE TABLE "documents_rebuilt" ("id" integer)')
        cursor.execute('CREATE TABLE "new__documents_rebuilt" ("id" integer, "x" integer)')
        cursor.execute('INSERT INTO "new__documents_rebuilt" ("id") SELECT "id" FROM "documents_rebuilt"')
        cursor.execute('DROP TABLE "documents_rebuilt"')
        cursor.execute('ALTER TABLE "new__documents_rebuilt" RENAME TO "documents_rebuilt"')
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        with allowances.allow_schema_changes("test: migrate"), connection.cursor() as cursor:
            cursor.execute('INSERT INTO "documents_rebuilt" ("id") VALUES (1)')


def test_the_sqlite_authorizer_table_is_built_once_per_process():
    assert sqlite_authorizer.write_actions() is sqlite_authorizer.write_actions()
    assert (
        sqlite_authorizer.authorizer() is not sqlite_authorizer.authorizer()
    )  # each connection its own DROP memory


def test_the_sqlite_authorizer_passes_reads_without_asking_for_the_state(monkeypatch):
    def unreachable() -> None:
        raise AssertionError("a read asked for the deploy mode state")

    monkeypatch.setattr(state, "cached", unreachable)
    authorize = sqlite_authorizer.authorizer()
    assert authorize(sqlite3.SQLITE_READ, "auth_group", "name", "main", None) == sqlite3.SQLITE_OK
    assert authorize(sqlite3.SQLITE_SELECT, None, None, None, None) == sqlite3.SQLITE_OK


def test_the_sqlite_authorizer_refuses_a_protected_write_when_the_state_is_unknown(monkeypatch):
    monkeypatch.setattr(state, "cached", lambda: None)  # cache expired, nothing judged: fail closed
    authorize = sqlite_authorizer.authorizer()
    assert authorize(sqlite3.SQLITE_INSERT, "auth_group", None, "main", None) == sqlite3.SQLITE_DENY
    off = state.DeployModeStatus(enabled=False, source="database")
    monkeypatch.setattr(state, "cached", lambda: off)
    assert authorize(sqlite3.SQLITE_INSERT, "auth_group", None, "main", None) == sqlite3.SQLITE_OK


@sqlite_only
def test_the_wrapper_hands_the_state_it_read_to_the_sqlite_authorizer(transactional_db, settings):
    # transactional_db: executescript commits first. Nothing cached: the authorizer has only the hand-over.
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (name) VALUES (%s) /* a fresh prepare */", ["handed over"])
    assert getattr(connection, sqlite_authorizer.JUDGED_ATTRIBUTE) == [
        None
    ]  # and taken back after the statement
    assert Group.objects.filter(name="handed over").exists()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):  # outside the wrapper: fail closed
        connection.connection.executescript("INSERT INTO auth_group (name) VALUES ('raw');")
