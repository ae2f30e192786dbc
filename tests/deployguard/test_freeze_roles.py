"""The freeze against hostile clients on PostgreSQL, with two real roles (made through db_roles).

Deploy mode is switched on as deploy_mode does it (as the owner). Then raw psycopg clients, as the
application role and as the owner, try every kind of statement that could write, lift the freeze
or learn its key. Every attempt is refused, and the data, the state and the freeze are unchanged;
what only the owner can still do (it owns the tables) is detected by the freeze's own check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest
from django.db import DatabaseError, connection

from deployguard import freeze, state
from deployguard.exceptions import DrainTimeout
from deployguard.models import DeployModeState
from tests.deployguard.roles_support import Roles
from tests.utils import run_command

pytestmark = pytest.mark.postgresql

REFUSED = freeze.SQLSTATE  # the trigger's refusal
NO_PRIVILEGE = "42501"  # insufficient_privilege (also "must be owner")
INSERT = "INSERT INTO auth_group (name) VALUES ('forged')"
NOOP_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
)

# Each: (what is tried, the statements in order, the SQLSTATE the last one fails with). Every
# statement before the last succeeds, as the client expects it to.
APP_ROLE_ATTEMPTS = [
    ("insert", [INSERT], REFUSED),
    ("update", ["UPDATE documents_submission SET title = 'forged'"], REFUSED),
    ("update that matches no row", ["UPDATE documents_submission SET title = title WHERE false"], REFUSED),
    ("delete", ["DELETE FROM documents_submission"], REFUSED),
    ("truncate", ["TRUNCATE documents_submission CASCADE"], NO_PRIVILEGE),
    ("insert on conflict", [INSERT + " ON CONFLICT DO NOTHING"], REFUSED),
    (
        "merge",
        [
            "MERGE INTO auth_group g USING (SELECT 'merged' AS name) s ON g.name = s.name "
            "WHEN NOT MATCHED THEN INSERT (name) VALUES (s.name)"
        ],
        REFUSED,
    ),
    ("insert in a CTE", [f"WITH w AS ({INSERT} RETURNING id) SELECT * FROM w"], REFUSED),  # noqa: S608
    ("insert in a DO block", [f"DO $$ BEGIN {INSERT}; END $$"], REFUSED),
    (
        "forged history row",
        ["INSERT INTO documents_historicalsubmission SELECT * FROM documents_historicalsubmission"],
        REFUSED,
    ),
    ("rewritten history", ["UPDATE documents_historicalsubmission SET history_change_reason = 'x'"], REFUSED),
    ("deleting the state row", ["DELETE FROM deployguard_deploymodestate"], REFUSED),
    ("switching the state off", ["UPDATE deployguard_deploymodestate SET enabled = false"], REFUSED),
    (
        "forged state history",
        [
            "INSERT INTO deployguard_historicaldeploymodestate "
            "SELECT * FROM deployguard_historicaldeploymodestate"
        ],
        REFUSED,
    ),
    (
        "planted deploy record",
        ["INSERT INTO deployguard_deployrecord SELECT * FROM deployguard_deployrecord"],
        REFUSED,
    ),
    ("rewritten scrub run", ["UPDATE deployguard_scrubrun SET kind = kind"], REFUSED),
    ("setval", ["SELECT setval('documents_submission_id_seq', 1000)"], NO_PRIVILEGE),
    ("nextval", ["SELECT nextval('documents_submission_id_seq')"], NO_PRIVILEGE),
    ("alter sequence", ["ALTER SEQUENCE documents_submission_id_seq RESTART WITH 1000"], NO_PRIVILEGE),
    ("guessing the key", ["SET deployguard.freeze_key = 'guess'", INSERT], REFUSED),
    (
        "guessing the key by set_config",
        ["SELECT set_config('deployguard.freeze_key', 'guess', false)", INSERT],
        REFUSED,
    ),
    ("the old well-known setting", ["SET deployguard.writes = 'allowed'", INSERT], REFUSED),
    ("reading the key", ["SELECT key FROM deployguard_freeze_key"], NO_PRIVILEGE),
    (
        "copying the key into the setting",
        ["SELECT set_config('deployguard.freeze_key', (SELECT key FROM deployguard_freeze_key), false)"],
        NO_PRIVILEGE,
    ),
    ("planting a key of its own", ["INSERT INTO deployguard_freeze_key VALUES ('mine')"], NO_PRIVILEGE),
    ("deleting the key", ["DELETE FROM deployguard_freeze_key"], NO_PRIVILEGE),
    (
        "a temporary key table shadowing the real one",
        [
            "CREATE TEMP TABLE deployguard_freeze_key (key text)",
            "INSERT INTO deployguard_freeze_key VALUES ('mine')",
            "SET deployguard.freeze_key = 'mine'",
            "SET search_path = pg_temp, public",
            INSERT,
        ],
        REFUSED,
    ),
    (
        "a temporary current_setting() shadowing the real one",
        [
            "CREATE FUNCTION pg_temp.current_setting(text, boolean) RETURNS text LANGUAGE sql AS "
            "$$ SELECT 'mine' $$",
            "SET search_path = pg_temp, public",
            INSERT,
        ],
        REFUSED,
    ),
    ("session_replication_role", ["SET session_replication_role = replica"], NO_PRIVILEGE),
    (
        "session_replication_role by set_config",
        ["SELECT set_config('session_replication_role', 'replica', false)"],
        NO_PRIVILEGE,
    ),
    ("SET ROLE to the owner", ["SET ROLE {owner}"], NO_PRIVILEGE),
    ("SET SESSION AUTHORIZATION", ["SET SESSION AUTHORIZATION {owner}"], NO_PRIVILEGE),
    ("disable the trigger", ["ALTER TABLE auth_group DISABLE TRIGGER deployguard_frozen"], NO_PRIVILEGE),
    ("disable every trigger", ["ALTER TABLE auth_group DISABLE TRIGGER ALL"], NO_PRIVILEGE),
    (
        "make it a replica trigger",
        ["ALTER TABLE auth_group ENABLE REPLICA TRIGGER deployguard_frozen"],
        NO_PRIVILEGE,
    ),
    ("drop the trigger", ["DROP TRIGGER deployguard_frozen ON auth_group"], NO_PRIVILEGE),
    ("replace the function", [NOOP_FUNCTION.format(name=freeze.FUNCTION)], NO_PRIVILEGE),
    (
        "a trigger of its own",
        [
            "CREATE TRIGGER a_first BEFORE INSERT ON auth_group FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {freeze.FUNCTION}()"
        ],
        NO_PRIVILEGE,
    ),
    ("a rule", ["CREATE RULE skip AS ON INSERT TO auth_group DO INSTEAD NOTHING"], NO_PRIVILEGE),
    ("take the table", ["ALTER TABLE auth_group OWNER TO CURRENT_USER"], NO_PRIVILEGE),
    ("alter the table", ["ALTER TABLE documents_submission ADD COLUMN forged int"], NO_PRIVILEGE),
    ("drop the table", ["DROP TABLE deployguard_deploymodestate CASCADE"], NO_PRIVILEGE),
    ("a table of its own", ["CREATE TABLE public.forged (id int)"], NO_PRIVILEGE),
    ("row level security", ["ALTER TABLE auth_group ENABLE ROW LEVEL SECURITY"], NO_PRIVILEGE),
]


@pytest.fixture
def frozen_with_roles(two_roles: Roles, django_db_blocker) -> Iterator[Roles]:
    """Two roles, a row of data, and deploy mode switched on by the owner as deploy_mode does."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (name) VALUES ('before the deploy')")
    state.switch_on(reason="Release 42", changed_by="ops@deploy-host")
    assert freeze.verify(connection) == []
    yield two_roles


def snapshot() -> dict[str, object]:
    """What no refused attempt may change: rows, the state, the sequences, the freeze."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_agg(name ORDER BY id) FROM auth_group")
        groups = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM documents_historicalsubmission")
        history = cursor.fetchone()[0]
        cursor.execute("SELECT last_value FROM documents_submission_id_seq")
        sequence = cursor.fetchone()[0]
        cursor.execute(f"SELECT key FROM {freeze.KEY_TABLE}")  # noqa: S608
        key = cursor.fetchall()
    state.clear_cache()
    return {
        "groups": groups,
        "history": history,
        "sequence": sequence,
        "key": key,
        "state": list(DeployModeState.objects.values_list("enabled", "reason")),
        "freeze": freeze.verify(connection),
    }


def attempt(url: str, statements: list[str], roles: Roles) -> psycopg.Error:
    with psycopg.connect(url, autocommit=True) as client:
        *before, last = [statement.format(owner=roles.owner) for statement in statements]
        for statement in before:
            client.execute(statement)
        with pytest.raises(psycopg.Error) as caught:
            client.execute(last)
    return caught.value


def attempts(url: str, tried: list[tuple[str, list[str], str]], roles: Roles) -> None:
    """Each attempt in its own connection: each fails as expected, and none changes anything."""
    before = snapshot()
    assert before["state"] == [(True, "Release 42")] and before["freeze"] == []
    got = {}
    for what, statements, _ in tried:
        error = attempt(url, statements, roles)
        got[what] = f"{error.sqlstate}: {str(error).splitlines()[0]}"
    expected = {what: sqlstate for what, _, sqlstate in tried}
    assert {what: answer.split(":")[0] for what, answer in got.items()} == expected, got
    assert snapshot() == before


def test_the_application_role_cannot_write_or_lift_the_freeze(frozen_with_roles: Roles):
    attempts(frozen_with_roles.app_url, APP_ROLE_ATTEMPTS, frozen_with_roles)


def test_the_application_role_cannot_copy_in(frozen_with_roles: Roles):
    before = snapshot()
    with psycopg.connect(frozen_with_roles.app_url, autocommit=True) as app:
        with pytest.raises(psycopg.Error) as caught:
            with app.cursor().copy("COPY auth_group (name) FROM STDIN") as copy:
                copy.write_row(["copied in"])
    assert caught.value.sqlstate == REFUSED
    assert snapshot() == before


OWNER_ATTEMPTS = [
    ("insert", [INSERT], REFUSED),
    ("delete", ["DELETE FROM documents_submission"], REFUSED),
    ("truncate", ["TRUNCATE documents_historicalsubmission"], REFUSED),
    ("deleting the state row", ["DELETE FROM deployguard_deploymodestate"], REFUSED),
    ("guessing the key", ["SET deployguard.freeze_key = 'guess'", INSERT], REFUSED),
    ("the old well-known setting", ["SET deployguard.writes = 'allowed'", INSERT], REFUSED),
    ("session_replication_role", ["SET session_replication_role = replica"], NO_PRIVILEGE),
]


def test_the_owner_without_the_key_is_refused_too(frozen_with_roles: Roles):
    attempts(frozen_with_roles.owner_url, OWNER_ATTEMPTS, frozen_with_roles)


def test_a_superuser_skipping_replica_triggers_is_still_refused(frozen_with_roles: Roles):
    before = snapshot()
    error = attempt(
        frozen_with_roles.superuser_url, ["SET session_replication_role = replica", INSERT], frozen_with_roles
    )
    assert error.sqlstate == REFUSED
    assert snapshot() == before


@pytest.mark.parametrize(
    ("statements", "problem"),
    [
        (
            ["ALTER TABLE auth_group DISABLE TRIGGER deployguard_frozen"],
            "auth_group: the freeze trigger is disabled",
        ),
        (
            ["ALTER TABLE auth_group ENABLE REPLICA TRIGGER deployguard_frozen"],
            "auth_group: the freeze trigger is enabled for replicas only",
        ),
        (["DROP TRIGGER deployguard_frozen ON auth_group"], "auth_group: no freeze trigger"),
        (
            [NOOP_FUNCTION.format(name=freeze.FUNCTION)],
            f"the function {freeze.FUNCTION}() is not the freeze's own definition",
        ),
        ([f"DELETE FROM {freeze.KEY_TABLE}"], "the freeze has no key"),  # noqa: S608
        (
            [f"GRANT SELECT ON {freeze.KEY_TABLE} TO PUBLIC"],
            f"roles other than its owner may use the key table {freeze.KEY_TABLE}",
        ),
    ],
)
def test_what_the_owner_can_still_do_is_reported_by_status(frozen_with_roles: Roles, statements, problem):
    """The owner owns the tables: PostgreSQL lets it lift the freeze. It cannot do so unseen."""
    with psycopg.connect(frozen_with_roles.owner_url, autocommit=True) as owner:
        for statement in statements:
            owner.execute(statement)

    assert problem in freeze.verify(connection)
    _, stderr, code = run_command("deploy_mode", "status")
    assert code == 5
    assert "The database freeze is broken: " in stderr and problem in stderr


def test_a_deleted_state_row_reads_as_on_and_state_lost_never_off(frozen_with_roles: Roles):
    with psycopg.connect(frozen_with_roles.owner_url, autocommit=True) as owner:
        owner.execute("ALTER TABLE deployguard_deploymodestate DISABLE TRIGGER deployguard_frozen")
        owner.execute("DELETE FROM deployguard_deploymodestate")
        owner.execute("ALTER TABLE deployguard_deploymodestate ENABLE ALWAYS TRIGGER deployguard_frozen")
    state.clear_cache()

    status = state.current()
    assert (status.enabled, status.source) == (True, "lost")
    stdout, _, code = run_command("deploy_mode", "status")
    assert code == 0
    assert stdout.startswith("Deploy mode is ON. Deploy mode is on, state lost: its state row is missing")

    _, _, code = run_command("deploy_mode", "off", "--reason", "state lost, put back")
    assert code == 0
    assert list(DeployModeState.objects.values_list("enabled", flat=True)) == [False]
    assert not any(freeze.frozen_tables(connection).values())


@contextlib.contextmanager
def django_as(role: str, owner: str) -> Iterator[None]:
    """Django's connection as `role` for the block (the site's, with DATABASE_URL), then the owner's."""
    connection.close()
    connection.settings_dict["USER"] = role
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["USER"] = owner


def test_the_application_role_can_neither_install_nor_lift_the_freeze(two_roles: Roles):
    with django_as(two_roles.app, two_roles.owner):
        state.enable(reason="Release 42", changed_by="the site")
        with pytest.raises(DrainTimeout) as caught:
            state.drain_in_flight_writes(timeout=5)
        assert str(caught.value).startswith("The database freeze needs the tables' owner, and this process")
        assert state.agreement(state.current())[0] == "off"
    state.disable(changed_by="ops@deploy-host")

    state.switch_on(reason="Release 43", changed_by="ops@deploy-host")
    with django_as(two_roles.app, two_roles.owner):
        with pytest.raises(DatabaseError):
            state.disable(changed_by="the site")
        state.clear_cache()
        assert state.current().enabled is True
        assert state.agreement(state.current()) == ("on", "The database freeze is on, as the state says.")
