"""The database's own freeze: while deploy mode is on, the database refuses writes from any client."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from deployguard import freeze, freeze_sqlite, state
from deployguard.allowances import allow_writes, own_records
from deployguard.exceptions import DeployModeActive, DrainTimeout
from deployguard.models import DeployModeState, DeployRecord, ScrubRun
from tests.deployguard.support import database_url_for, manage
from tests.factories import SubmissionFactory
from tests.waiting import wait_until

# A statement-level trigger fires even when no row matches: a probe that changes nothing.
PROBE = "UPDATE documents_submission SET title = title WHERE false"


@pytest.fixture
def frozen(transactional_db, fast_switch) -> Iterator[str]:
    """Deploy mode switched on the way deploy_safe does it (the drain freezes the database)."""
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    try:
        yield state.drain_in_flight_writes(timeout=5)
    finally:
        state.disable(changed_by="pytest")


def enforced() -> bool:
    """Every freezable table carries an enabled trigger."""
    on = freeze.frozen_tables(connection)
    return all(on.get(table, False) for table in freeze.freezable_tables(connection))


def refused(client: psycopg.Connection, sql: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        client.execute(sql)
    return caught.value


def test_the_drain_freezes_every_protected_table_and_deployguards_records_but_migrates_bookkeeping(frozen):
    tables = freeze.freezable_tables(connection)

    engine = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
    assert frozen == (
        f"waited for writers on {len(tables)} protected tables; the database now refuses their writes "
        f"({engine} triggers)"
    )
    assert "documents_submission" in tables
    assert "documents_historicalsubmission" in tables
    assert {"deployguard_deploymodestate", "deployguard_deployrecord", "deployguard_scrubrun"} <= set(tables)
    assert not {"django_migrations", "django_session", "deployguard_refusedjobwrite"} & set(tables)
    assert enforced()
    assert freeze.verify(connection) == []


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("sql", "verb"),
    [
        (PROBE, "UPDATE"),
        ("DELETE FROM documents_submission WHERE false", "DELETE"),
        ("INSERT INTO documents_submission SELECT * FROM documents_submission WHERE false", "INSERT"),
        ("TRUNCATE documents_historicalsubmission", "TRUNCATE"),
    ],
)
def test_a_client_without_deployguard_is_refused_by_the_database(frozen, outsider, sql, verb):
    error = refused(outsider, sql)

    assert error.sqlstate == freeze.SQLSTATE
    table = sql.split("documents_")[1].split()[0]
    assert (
        error.diag.message_primary
        == f'Deploy mode is on: {verb} on "documents_{table}" refused by the database.'
    )
    assert error.diag.message_hint == "Writes resume when it is turned off: manage.py deploy_mode off."


@pytest.mark.postgresql
def test_copy_is_refused_and_writes_resume_when_deploy_mode_is_off(frozen, outsider):
    with pytest.raises(psycopg.Error) as caught:
        with outsider.cursor().copy("COPY auth_group (name) FROM STDIN") as copy:
            copy.write_row(["copied in"])
    assert caught.value.sqlstate == freeze.SQLSTATE

    state.disable(changed_by="pytest")

    assert not enforced()
    outsider.execute(PROBE)
    with outsider.cursor().copy("COPY auth_group (name) FROM STDIN") as copy:
        copy.write_row(["copied in"])
    assert outsider.execute("SELECT count(*) FROM auth_group WHERE name = 'copied in'").fetchone() == (1,)


@pytest.mark.postgresql
def test_a_transaction_begun_before_the_freeze_cannot_write_after_it(transactional_db, fast_switch, outsider):
    for isolation in (psycopg.IsolationLevel.READ_COMMITTED, psycopg.IsolationLevel.REPEATABLE_READ):
        outsider.autocommit = False
        outsider.isolation_level = isolation
        outsider.execute("SELECT count(*) FROM documents_submission")  # its snapshot is taken
        state.enable(reason="Release 42", changed_by="ops@deploy-host")
        state.drain_in_flight_writes(timeout=5)
        try:
            assert refused(outsider, PROBE).sqlstate == freeze.SQLSTATE, isolation
        finally:
            outsider.rollback()
            state.disable(changed_by="pytest")


@contextlib.contextmanager
def draining(outsider: psycopg.Connection) -> Iterator[tuple[list[str], threading.Thread]]:
    """Deploy mode on, and its drain running on a thread of its own while the block runs:
    (what the drain returned, once it has, and its thread). The outsider's open transaction
    is rolled back at the end."""
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    drained: list[str] = []

    def drain() -> None:
        try:
            drained.append(state.drain_in_flight_writes(timeout=10))
        finally:
            connections.close_all()

    thread = threading.Thread(target=drain)
    thread.start()
    try:
        yield drained, thread
    finally:
        outsider.rollback()
        thread.join(timeout=15)
        state.disable(changed_by="pytest")


@pytest.mark.postgresql
def test_the_freeze_waits_for_a_transaction_that_wrote_and_lets_it_commit(
    transactional_db, fast_switch, outsider
):
    outsider.autocommit = False
    outsider.execute("INSERT INTO auth_group (name) VALUES ('in flight')")  # holds its write lock
    with draining(outsider) as (drained, thread):
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for the writer
        outsider.commit()
        thread.join(timeout=10)
        assert drained and drained[0].startswith("waited for writers on ")
        assert outsider.execute("SELECT count(*) FROM auth_group WHERE name = 'in flight'").fetchone() == (1,)
        assert (
            refused(outsider, "INSERT INTO auth_group (name) VALUES ('too late')").sqlstate == freeze.SQLSTATE
        )


def _waiting_for_a_lock(client: psycopg.Connection, table: str) -> bool:
    return client.execute(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass", [table]
    ).fetchone() == (1,)


@pytest.mark.postgresql
def test_a_deadlock_with_a_writer_is_ended_by_failing_the_freeze_which_starts_again(
    transactional_db, fast_switch, outsider
):
    """The freeze locks tables in name order. A writer holding documents_submission that then
    writes to auth_group (locked already) closes a cycle; PostgreSQL fails the freeze, which
    waited first. The writer commits, and the freeze, started again, completes."""
    outsider.autocommit = False
    outsider.execute(PROBE)  # holds documents_submission's write lock
    with draining(outsider) as (drained, thread):
        with psycopg.connect(database_url_for(connection.settings_dict), autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            while not _waiting_for_a_lock(watcher, "documents_submission") and time.monotonic() < deadline:
                time.sleep(0.02)
        outsider.execute("INSERT INTO auth_group (name) VALUES ('closes the cycle')")  # waits, then goes on
        outsider.commit()
        thread.join(timeout=15)
        assert drained and drained[0].startswith("waited for writers on ")
        assert enforced()
        assert outsider.execute(
            "SELECT count(*) FROM auth_group WHERE name = 'closes the cycle'"
        ).fetchone() == (1,)


@pytest.mark.postgresql
def test_a_writer_that_outlasts_the_drain_timeout_leaves_the_database_unfrozen(
    transactional_db, fast_switch, outsider, monkeypatch
):
    attempts: list[int] = []
    enable = freeze.enable_triggers
    monkeypatch.setattr(freeze, "enable_triggers", lambda *a, **k: attempts.append(1) or enable(*a, **k))
    outsider.autocommit = False
    outsider.execute(PROBE)
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    try:
        with pytest.raises(DrainTimeout) as caught:
            state.drain_in_flight_writes(timeout=0.2)
        assert "the database does not refuse writes yet" in str(caught.value)
        assert not enforced()
        assert len(attempts) == 1  # a lock timeout is not a deadlock: not tried again
    finally:
        outsider.rollback()
        state.disable(changed_by="pytest")


def test_a_process_trusting_a_cached_off_gets_the_guards_refusal_not_a_database_error(frozen):
    state.prime_cache(state.DeployModeStatus(enabled=False, source="database"))

    with pytest.raises(DeployModeActive) as caught:
        SubmissionFactory(ml_number="ML-007")  # its acting user is the first row it writes

    assert caught.value.action == 'INSERT on "auth_user"'
    assert caught.value.status.enabled
    assert "manage.py deploy_mode off" in str(caught.value)


@pytest.mark.postgresql
def test_what_deployguard_allows_passes_the_trigger_for_that_statement_only(frozen, outsider):
    with allow_writes("a named data migration"), connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (name) VALUES ('allowed')")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s, true)", [freeze.SETTING])
        assert cursor.fetchone() == ("",)

    assert outsider.execute("SELECT name FROM auth_group").fetchall() == [("allowed",)]
    assert (
        refused(outsider, "INSERT INTO auth_group (name) VALUES ('not allowed')").sqlstate == freeze.SQLSTATE
    )


def test_sqlite_refuses_a_client_without_deployguard_until_deploy_mode_is_off(shared_database_url):
    import sqlite3

    from django.db import connection as django_connection

    if django_connection.vendor != "sqlite":
        pytest.skip("the SQLite freeze: PostgreSQL's is tested above")
    path = shared_database_url.removeprefix("sqlite:///")
    insert = "INSERT INTO auth_group (name) VALUES ('from outside')"
    with contextlib.closing(sqlite3.connect(path)) as outside:
        outside.execute("ANALYZE")  # creates sqlite_stat1, which takes no trigger
        outside.commit()
    switched = manage(shared_database_url, "deploy_mode", "on", "--reason", "Release 42")
    assert switched.returncode == 0, switched.stderr

    with contextlib.closing(sqlite3.connect(path)) as outside:
        function = freeze_sqlite.current_function(outside)
        assert function is not None and function.startswith(freeze_sqlite.FUNCTION_PREFIX)
        with pytest.raises(sqlite3.OperationalError, match=f"no such function: {function}"):
            outside.execute(insert)
        outside.create_function(function, 0, lambda: 0)  # a client that says "not allowed"
        with pytest.raises(sqlite3.IntegrityError) as caught:
            outside.execute(insert)
        assert str(caught.value) == 'Deploy mode is on: INSERT on "auth_group" refused by the database.'
        assert freeze.is_refusal(caught.value)

    assert manage(shared_database_url, "deploy_mode", "off").returncode == 0
    with contextlib.closing(sqlite3.connect(path)) as outside:
        outside.execute(insert)
        outside.commit()
        assert outside.execute("SELECT count(*) FROM auth_group").fetchone() == (1,)
        assert outside.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (0,)


# --- the freeze verifies what it installs, and switching is serialized ----------------------


def _same_named_trigger_that_lets_everything_through(cursor) -> None:
    """Made while deploy mode is off (a migration or any cursor can): a trigger with the
    freeze's name on auth_group that lets every write through."""
    if connection.vendor == "sqlite":
        cursor.execute(
            f'CREATE TRIGGER "{freeze_sqlite.trigger_name("auth_group", "INSERT")}" '
            "BEFORE INSERT ON auth_group WHEN 0 BEGIN SELECT 1; END"
        )
        return
    cursor.execute(
        "CREATE OR REPLACE FUNCTION lets_everything_through() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$"
    )
    cursor.execute(f"DROP TRIGGER IF EXISTS {freeze.TRIGGER} ON auth_group")  # an earlier freeze's, off
    cursor.execute(
        f"CREATE TRIGGER {freeze.TRIGGER} BEFORE INSERT ON auth_group FOR EACH ROW "
        "EXECUTE FUNCTION lets_everything_through()"
    )


def test_a_trigger_already_named_like_the_freezes_is_replaced_not_trusted(transactional_db, fast_switch):
    with connection.cursor() as cursor:
        _same_named_trigger_that_lets_everything_through(cursor)
    assert freeze.verify(connection, ["auth_group"]) != []

    state.switch_on(reason="Release 42", changed_by="ops@deploy-host")
    try:
        assert freeze.verify(connection) == []
        assert freeze.frozen_tables(connection)["auth_group"] is True
        if connection.vendor == "postgresql":
            with psycopg.connect(database_url_for(connection.settings_dict), autocommit=True) as outsider:
                error = refused(outsider, "INSERT INTO auth_group (name) VALUES ('through a lookalike')")
            assert error.sqlstate == freeze.SQLSTATE
    finally:
        state.disable(changed_by="pytest")
    assert Group.objects.count() == 0


def test_a_drain_that_comes_after_the_switch_off_does_not_freeze(transactional_db, fast_switch):
    """on, then off before on's drain: the drain, under the switch's lock, sees the state off."""
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    state.disable(changed_by="a second operator")

    assert state.drain_in_flight_writes(timeout=5) == (
        "skipped: deploy mode was turned off meanwhile, so the database was not frozen"
    )
    assert not any(freeze.frozen_tables(connection).values())
    assert state.agreement(state.current()) == ("off", "The database freeze is off, as the state says.")


@pytest.mark.postgresql
def test_a_switch_waits_for_the_one_in_progress(transactional_db, fast_switch, outsider):
    state.switch_on(reason="Release 42", changed_by="ops@deploy-host")
    outsider.autocommit = False
    outsider.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s))", [freeze.SWITCH_LOCK]
    )  # a switch in progress
    done: list[bool] = []

    def switch_off() -> None:
        try:
            state.disable(changed_by="pytest")
            done.append(True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=switch_off)
    thread.start()
    try:
        with psycopg.connect(database_url_for(connection.settings_dict), autocommit=True) as watcher:
            wait_until(
                lambda: (
                    watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    ).fetchone()
                    == (1,)
                ),
                "the switch off to wait for the switch's lock",
            )
        assert not done
        assert all(freeze.frozen_tables(connection).values())
    finally:
        outsider.rollback()
        thread.join(timeout=15)
    assert done == [True]
    assert not any(freeze.frozen_tables(connection).values())
    assert state.current().enabled is False


def test_deployguards_records_are_refused_to_stray_code_in_deploy_mode(frozen):
    with pytest.raises(DeployModeActive) as caught:
        DeployModeState.objects.all().delete()
    assert caught.value.action.startswith("DELETE on ")
    with pytest.raises(DeployModeActive), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO deployguard_deployrecord (deploy_id, status, started_by, started_at, backup_path, "
            "message, report) VALUES ('planted', 'succeeded', '', CURRENT_TIMESTAMP, '', '', '{}')"
        )
    with pytest.raises(DeployModeActive):
        ScrubRun.objects.create(kind=ScrubRun.Kind.SCRUB)
    state.clear_cache()
    assert state.current().enabled is True
    assert DeployRecord.objects.count() == 0 and ScrubRun.objects.count() == 0


def test_loaddata_cannot_plant_a_deploy_record_in_deploy_mode(frozen, tmp_path):
    fixture = tmp_path / "planted.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "deployguard.deployrecord",
                    "pk": 99,
                    "fields": {
                        "deploy_id": "planted",
                        "status": "succeeded",
                        "started_at": "2026-01-01T00:00:00Z",
                    },
                }
            ]
        )
    )
    with pytest.raises(DeployModeActive) as caught:
        call_command("loaddata", str(fixture), verbosity=0)
    assert 'Deploy mode is on: UPDATE on "deployguard_deployrecord" refused.' in str(caught.value)
    assert DeployRecord.objects.count() == 0


def test_deployguards_own_code_writes_its_records_through_the_freeze(frozen):
    with own_records("a test of deployguard's own records"):
        DeployRecord.objects.create(deploy_id="d-1", started_at=timezone.now())
    assert DeployRecord.objects.get().deploy_id == "d-1"
    assert DeployRecord.history.count() == 1
