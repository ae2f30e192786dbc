"""SQLite's freeze against clients that try to get round it: a plain sqlite3 client, and the raw
connection under Django's (which carries deployguard's authorizer).

SQLite has no access control: the freeze stops careless code, not a process that reads the
schema. What such a process can still do is tried here too, and `deploy_mode status` reports it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest
from django.db import connection

from deployguard import freeze, freeze_sqlite, state
from tests.deployguard.support import manage

INSERT = "INSERT INTO auth_group (name) VALUES ('from outside')"


@pytest.fixture
def sqlite_frozen(shared_database_url) -> Iterator[str]:
    """A database file frozen by `deploy_mode on` in another process: its path."""
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite freeze")
    switched = manage(shared_database_url, "deploy_mode", "on", "--reason", "Release 42")
    assert switched.returncode == 0, switched.stderr
    yield shared_database_url.removeprefix("sqlite:///")


def plain(path: str) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def count(path: str, sql: str) -> int:
    with plain(path) as client:
        return client.execute(sql).fetchone()[0]


@pytest.mark.parametrize(
    "guess",
    [
        "deployguard_writes_allowed",  # the function's name before it was drawn for each freeze
        freeze_sqlite.FUNCTION_PREFIX,
        freeze_sqlite.FUNCTION_PREFIX + "0" * 32,
        "deployguard_allowed",
    ],
)
def test_a_plain_client_cannot_define_the_function_by_a_guessed_name(sqlite_frozen, guess):
    with plain(sqlite_frozen) as client:
        client.create_function(guess, 0, lambda: 1)
        for statement in (
            INSERT,
            "UPDATE deployguard_deploymodestate SET enabled = 0",
            "DELETE FROM deployguard_deploymodestate",
            "INSERT INTO deployguard_deployrecord (deploy_id, status, started_by, started_at, backup_path, "
            "message, report) VALUES ('planted', 'succeeded', '', '2026-01-01', '', '', '{}')",
            "DELETE FROM documents_historicalsubmission",
        ):
            with pytest.raises(sqlite3.OperationalError, match="no such function: deployguard_allowed_"):
                client.execute(statement)
    assert count(sqlite_frozen, "SELECT count(*) FROM auth_group") == 0
    assert count(sqlite_frozen, "SELECT enabled FROM deployguard_deploymodestate") == 1


def test_each_freeze_draws_a_new_function_name(sqlite_frozen, shared_database_url):
    with plain(sqlite_frozen) as client:
        first = freeze_sqlite.current_function(client)
    assert manage(shared_database_url, "deploy_mode", "off").returncode == 0
    assert manage(shared_database_url, "deploy_mode", "on", "--reason", "Release 43").returncode == 0
    with plain(sqlite_frozen) as client:
        second = freeze_sqlite.current_function(client)
    assert first and second and first != second


@pytest.mark.parametrize(
    ("statements", "problem"),
    [
        (["DROP TRIGGER deployguard_frozen_insert_auth_group"], "auth_group: no freeze trigger for INSERT"),
        (
            [
                "PRAGMA writable_schema = ON",
                "DELETE FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'auth_group'",
            ],
            "auth_group: no freeze trigger for INSERT",
        ),
    ],
)
def test_what_a_process_reading_the_schema_can_still_do_is_reported_by_status(
    sqlite_frozen, shared_database_url, statements, problem
):
    with plain(sqlite_frozen) as client:
        for statement in statements:
            client.execute(statement)
    with plain(sqlite_frozen) as client:
        client.execute(INSERT)  # SQLite cannot stop it
        assert client.execute("SELECT count(*) FROM auth_group").fetchone() == (1,)

    status = manage(shared_database_url, "deploy_mode", "status")
    assert status.returncode == 5
    assert "The database freeze is broken: " in status.stderr and problem in status.stderr


def test_a_process_that_reads_the_function_name_can_write_which_sqlite_cannot_stop(sqlite_frozen):
    with plain(sqlite_frozen) as client:
        client.create_function(freeze_sqlite.current_function(client), 0, lambda: 1)
        client.execute(INSERT)
    assert count(sqlite_frozen, "SELECT count(*) FROM auth_group") == 1


@pytest.fixture
def guarded_raw(transactional_db, fast_switch) -> Iterator[sqlite3.Connection]:
    """Deploy mode on, and the raw sqlite3 connection under Django's (with deployguard's authorizer)."""
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite authorizer")
    state.switch_on(reason="Release 42", changed_by="ops@deploy-host")
    state.prime_cache(state.current(), seconds=60)  # what the process trusts while the state is cached
    connection.ensure_connection()
    try:
        yield connection.connection
    finally:
        state.disable(changed_by="pytest")


@pytest.mark.parametrize(
    "statement",
    [
        "PRAGMA writable_schema = ON",
        "PRAGMA writable_schema = 1",
        "DELETE FROM sqlite_master WHERE type = 'trigger'",
        "DROP TRIGGER deployguard_frozen_insert_auth_group",
        "UPDATE sqlite_sequence SET seq = 1000",
        "DELETE FROM deployguard_deploymodestate",
        "UPDATE deployguard_historicaldeploymodestate SET history_change_reason = 'forged'",
        "CREATE TRIGGER a_lookalike BEFORE INSERT ON auth_group BEGIN SELECT 1; END",
        INSERT,
    ],
)
def test_the_guarded_raw_connection_cannot_touch_the_schema_or_the_frozen_tables(guarded_raw, statement):
    guarded_raw.create_function(freeze_sqlite.current_function(guarded_raw), 0, lambda: 1)
    # sqlite_master: SQLite's own refusal, as writable_schema cannot be turned on.
    with pytest.raises(
        sqlite3.DatabaseError, match=r"not authorized|table sqlite_master may not be modified"
    ):
        guarded_raw.execute(statement)
    assert freeze.verify(connection) == []
    assert guarded_raw.execute("SELECT count(*) FROM auth_group").fetchone() == (0,)


def test_the_guarded_raw_connection_refuses_writable_schema_when_the_state_is_unknown(guarded_raw):
    state.clear_cache()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        guarded_raw.execute("PRAGMA writable_schema = ON")
