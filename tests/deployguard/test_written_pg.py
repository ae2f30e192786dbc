"""PostgreSQL's write log (deployguard.written_pg): which tables were written after a snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection, transaction

from deployguard import written_pg
from tests.deployguard.roles_support import Roles

pytestmark = pytest.mark.postgresql

TABLES = ["auth_group", "documents_submission"]
assert written_pg.LOG == "deployguard_written_log"


@pytest.fixture
def logged(two_roles: Roles) -> Iterator[Roles]:
    """The log on two tables, installed by the owner (Django's connection); the site writes as
    the application role."""
    assert written_pg.install(connection, TABLES, lock_timeout=5) == 2
    yield two_roles
    written_pg.remove(connection)


def snapshot_now() -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return written_pg.snapshot(cursor)


def proved(since: str) -> set[str] | None:
    return written_pg.unwritten_since(connection, since, TABLES)


def test_a_write_by_the_application_role_is_logged_against_its_table_only(logged: Roles):
    since = snapshot_now()
    assert proved(since) == set(TABLES)

    with psycopg.connect(logged.app_url, autocommit=True) as app:
        app.execute("INSERT INTO auth_group (name) VALUES ('written after the snapshot')")

    assert proved(since) == {"documents_submission"}


def test_a_transaction_in_flight_at_the_snapshot_that_commits_later_counts_as_after_it(logged: Roles):
    with psycopg.connect(logged.app_url) as app:
        app.execute("UPDATE auth_group SET name = name")  # written, not committed
        since = snapshot_now()
        app.commit()

    assert proved(since) == {"documents_submission"}


def test_a_write_rolled_back_is_not_logged(logged: Roles):
    since = snapshot_now()
    with psycopg.connect(logged.app_url) as app:
        app.execute("INSERT INTO auth_group (name) VALUES ('never')")
        app.rollback()

    assert proved(since) == set(TABLES)


def test_the_application_role_can_neither_read_nor_empty_the_log_nor_switch_it_off(logged: Roles):
    for statement in (
        "SELECT * FROM deployguard_written_log",
        "DELETE FROM deployguard_written_log",
        f"ALTER TABLE auth_group DISABLE TRIGGER {written_pg.TRIGGER}",
    ):
        with psycopg.connect(logged.app_url, autocommit=True) as app:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)


def test_a_table_whose_trigger_is_off_or_replaced_is_not_proved(logged: Roles):
    since = snapshot_now()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE auth_group DISABLE TRIGGER {written_pg.TRIGGER}")
    assert proved(since) == {"documents_submission"}

    with connection.cursor() as cursor:  # a trigger of the same name that logs nothing
        cursor.execute(f"DROP TRIGGER {written_pg.TRIGGER} ON documents_submission")
        cursor.execute(
            "CREATE FUNCTION pg_temp.quiet() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER {written_pg.TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            "ON documents_submission FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.quiet()"
        )
    assert proved(since) == set()

    # Installing again puts its own back.
    written_pg.install(connection, TABLES, lock_timeout=5)
    assert proved(snapshot_now()) == set(TABLES)


def test_truncate_is_logged_and_removing_switches_the_triggers_off_and_empties_the_log(logged: Roles):
    since = snapshot_now()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE auth_group CASCADE")
    assert proved(since) == {"documents_submission"}

    assert written_pg.remove(connection) == 2

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM deployguard_written_log")
        assert cursor.fetchone() == (0,)
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = %s AND tgenabled <> 'D'", [written_pg.TRIGGER]
        )
        assert cursor.fetchone() == (0,)
    assert proved(since) == set()  # nothing is proved while nothing is logged
