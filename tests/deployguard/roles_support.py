"""Two real PostgreSQL roles for a test: the tables' owner and the application role db_roles makes.

The test database is created by the superuser; for the test its tables (and the freeze's function
and key) are handed to a plain owner role, Django connects as that owner (as deploy_safe and
deploy_mode do with DEPLOYGUARD_OWNER_DATABASE_URL), and `db_roles --apply` makes the application
role. Afterwards everything goes back to the superuser and both roles are dropped. Role names come
from the database's (test_<name> -> <name>_owner, <name>_app), so parallel databases do not share them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from django.db import connection

from deployguard import roles, state
from tests.deployguard.support import database_url_for
from tests.utils import run_command


@dataclass(frozen=True)
class Roles:
    owner: str
    app: str
    owner_url: str
    app_url: str
    superuser_url: str


def _role_names() -> tuple[str, str]:
    base = str(connection.settings_dict["NAME"]).removeprefix("test_")
    return f"{base}_owner", f"{base}_app"


def _relations_owned_by(admin: psycopg.Connection, role: str) -> list[tuple[str, str]]:
    """(kind, name) of each table, view and free-standing sequence of `public` that `role` owns."""
    return admin.execute(
        "SELECT c.relkind::text, c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S') "
        "AND r.rolname = %s AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "AND d.objid = c.oid AND d.deptype IN ('a', 'i'))",
        [role],
    ).fetchall()


def _hand_over(admin: psycopg.Connection, source: str, target: str) -> None:
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "S": "SEQUENCE"}
    for kind, name in _relations_owned_by(admin, source):
        admin.execute(f'ALTER {kinds[kind]} public."{name}" OWNER TO "{target}"')
    for (signature,) in admin.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'deployguard%%' AND r.rolname = %s",
        [source],
    ).fetchall():
        admin.execute(f'ALTER FUNCTION {signature} OWNER TO "{target}"')


def _drop_roles(admin: psycopg.Connection, superuser: str, *names: str) -> None:
    """Drop the roles, after handing back whatever they own (DROP OWNED would drop it)."""
    for name in names:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            _hand_over(admin, name, superuser)
            admin.execute(f'DROP OWNED BY "{name}"')
            admin.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def two_roles(transactional_db, fast_switch, settings) -> Iterator[Roles]:
    """The owner and the application role, made through db_roles; Django connects as the owner."""
    if connection.vendor != "postgresql":
        pytest.skip("roles: PostgreSQL only")
    owner, app = _role_names()
    superuser_url = database_url_for(connection.settings_dict)
    superuser = str(connection.settings_dict.get("USER") or "postgres")
    settings_user = connection.settings_dict.get("USER")
    with psycopg.connect(superuser_url, autocommit=True) as admin:
        _drop_roles(admin, superuser, app, owner)  # left by an interrupted run
        admin.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER')
        admin.execute(f'CREATE ROLE "{app}" LOGIN NOSUPERUSER')
        admin.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{owner}"')
        _hand_over(admin, superuser, owner)
    settings.DEPLOYGUARD_OWNER_DATABASE = {"USER": owner, "PASSWORD": ""}
    roles.connect_as_owner("default")
    _, stderr, code = run_command("db_roles", "--app-role", app, "--apply")
    assert code == 0, stderr
    base = {**connection.settings_dict}
    try:
        yield Roles(
            owner=owner,
            app=app,
            owner_url=database_url_for({**base, "USER": owner}),
            app_url=database_url_for({**base, "USER": app}),
            superuser_url=superuser_url,
        )
    finally:
        state.disable(changed_by="pytest")
        connection.close()
        connection.settings_dict["USER"] = settings_user
        with psycopg.connect(superuser_url, autocommit=True) as admin:
            _drop_roles(admin, superuser, app, owner)
