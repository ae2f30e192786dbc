"""db_roles and the owner's connection: the application role reads and writes rows, nothing else."""

from __future__ import annotations

import psycopg
import pytest
from django.core import checks
from django.db import connection

from deployguard import roles
from deployguard.checks import check_database_role
from tests.deployguard.roles_support import Roles
from tests.utils import run_command

pytestmark = pytest.mark.postgresql


def privilege(client: psycopg.Connection, function: str, name: str, kind: str) -> bool:
    return client.execute(f"SELECT {function}(%s, %s)", [name, kind]).fetchone()[0]


def test_db_roles_grants_rows_only_and_no_sequence_or_key(two_roles: Roles):
    with psycopg.connect(two_roles.app_url, autocommit=True) as app:
        for kind in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert privilege(app, "has_table_privilege", "documents_submission", kind), kind
        for kind in ("TRUNCATE", "TRIGGER", "REFERENCES"):
            assert not privilege(app, "has_table_privilege", "documents_submission", kind), kind
        for kind in ("USAGE", "SELECT", "UPDATE"):
            assert not privilege(app, "has_sequence_privilege", "documents_submission_id_seq", kind), kind
        assert not privilege(app, "has_schema_privilege", "public", "CREATE")
        assert app.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
        )
        # An identity column needs no sequence privilege: the application role inserts rows.
        app.execute("INSERT INTO auth_group (name) VALUES ('written by the app role')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT nextval('auth_group_id_seq')")
    # Django connects as the owner (as the owner's commands do), a plain role.
    assert [problem.split(", ")[1].split(" of ")[0] for problem in roles.connections_problems()] == [
        "the owner"
    ]


def test_db_roles_prints_without_applying_and_names_each_grant(two_roles: Roles):
    stdout, _, code = run_command("db_roles", "--app-role", two_roles.app)
    assert code == 0
    lines = stdout.splitlines()
    assert (
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "public"."documents_submission" TO "{two_roles.app}";'
        in lines
    )
    assert f'REVOKE ALL ON SEQUENCE "public"."documents_submission_id_seq" FROM "{two_roles.app}";' in lines
    assert not any("GRANT" in line and "deployguard_freeze_key" in line for line in lines)
    assert not any(line.startswith("GRANT") and "SEQUENCE" in line for line in lines)


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("no_such_role_here", "Role 'no_such_role_here' does not exist: create it first"),
        ("postgres", "Role 'postgres' is a superuser, which no grant can limit: use a plain role."),
    ],
)
def test_db_roles_refuses_a_role_it_cannot_limit(two_roles: Roles, role, message):
    _, stderr, code = run_command("db_roles", "--app-role", role)
    assert code == 2
    assert message in stderr


def test_db_roles_refuses_the_owner_itself(two_roles: Roles):
    _, stderr, code = run_command("db_roles", "--app-role", two_roles.owner)
    assert code == 2
    assert f"{two_roles.owner!r} is the role this command connects as, the tables' owner" in stderr


def test_check_deploy_warns_when_the_site_connects_as_a_superuser_or_the_owner(transactional_db):
    # The test database's role is the superuser that owns every table.
    messages = check_database_role()
    role = connection.settings_dict.get("USER") or "postgres"
    assert [message.id for message in messages] == ["deployguard.W030", "deployguard.W030"]
    assert all(isinstance(message, checks.Warning) for message in messages)
    assert messages[0].msg.startswith(f"The site connects as {role!r}, a superuser: it can lift")
    assert messages[1].msg.startswith(f"The site connects as {role!r}, the owner of ")


def test_check_deploy_is_quiet_for_the_application_role(two_roles: Roles):
    connection.close()
    connection.settings_dict["USER"] = two_roles.app
    try:
        assert check_database_role() == []
    finally:
        connection.close()
        connection.settings_dict["USER"] = two_roles.owner
