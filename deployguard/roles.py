"""PostgreSQL roles: the least-privileged application role's grants, and the owner's connection.

The site and its workers connect as an application role that may read and write rows and
nothing else (DATABASE_URL); migrations, `deploy_safe`, `deploy_mode` and `db_roles` connect as
the tables' owner (DEPLOYGUARD_OWNER_DATABASE_URL). Only the owner can install, disable or drop
the freeze's triggers, read the freeze's key, move a sequence or change the schema.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard import conf, freeze
from deployguard.tables import protected_tables

# Commands that act for the deploy pipeline: they switch to the owner's credentials at start-up.
OWNER_COMMANDS = frozenset({"migrate", "deploy_safe", "deploy_safe_migrate", "deploy_mode", "db_roles"})
# The parts of a DATABASES entry that say who connects (the database itself stays the app's).
CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")
ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


def owner_settings() -> dict[str, Any] | None:
    """The owner's DATABASES entry (DEPLOYGUARD_OWNER_DATABASE_URL), or None for one role."""
    return conf.get("DEPLOYGUARD_OWNER_DATABASE") or None


def prepare_process(command: str) -> None:
    """At start-up (AppConfig.ready): the owner's commands connect as the owner."""
    if command in OWNER_COMMANDS:
        connect_as_owner(conf.get("DEPLOYGUARD_DATABASE"))


def connect_as_owner(alias: str = "default") -> bool:
    """Make `alias` connect with the owner's credentials from now on; False when none are set.

    Closes a connection opened before (start-up checks); the database name stays the one
    DATABASE_URL names (test runs rename it), so only who connects changes.
    """
    owner = owner_settings()
    if not owner:
        return False
    connection = connections[alias]
    connection.close()
    for key in CREDENTIALS:
        if key in owner:
            connection.settings_dict[key] = owner[key]
    return True


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def current_role(connection: BaseDatabaseWrapper) -> tuple[str, bool]:
    """(the role this connection acts as, whether it is a superuser)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        name, superuser = cursor.fetchone()
    return name, bool(superuser)


def owned_tables(connection: BaseDatabaseWrapper, role: str) -> list[str]:
    """Tables of the current schema that `role` owns."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace "
            "AND r.rolname = %s ORDER BY 1",
            [role],
        )
        return [name for (name,) in cursor.fetchall()]


class RoleProblem(Exception):
    """db_roles cannot write grants for this role: the message says why and what to do."""


def app_role_sql(connection: BaseDatabaseWrapper, role: str) -> list[str]:
    """The statements that make `role` a least-privileged application role on this database.

    Run as the owner of the tables. Rows only: SELECT, INSERT, UPDATE, DELETE on each table the
    owner has in the current schema (not TRUNCATE, REFERENCES or TRIGGER; the freeze's key table
    not at all); no sequence privileges, except USAGE on a sequence a column's default calls
    nextval() on (a `serial` column: Django's AutoFields are identity columns on PostgreSQL and
    need none); no right to create anything. Tables the owner creates later get the same row
    privileges (ALTER DEFAULT PRIVILEGES); the freeze revokes them from its key table.
    """
    owner, _ = current_role(connection)
    if role == owner:
        raise RoleProblem(
            f"{role!r} is the role this command connects as, the tables' owner: name another role, "
            "the one the site will connect as."
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        found = cursor.fetchone()
        if found is None:
            raise RoleProblem(
                f"Role {role!r} does not exist: create it first (CREATE ROLE {quote(role)} LOGIN PASSWORD "
                "'…'), then run db_roles again."
            )
        if found[0]:
            raise RoleProblem(f"Role {role!r} is a superuser, which no grant can limit: use a plain role.")
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        cursor.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p') "
            "AND c.relnamespace = current_schema()::regnamespace AND c.relowner = "
            "(SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1"
        )
        tables = [name for (name,) in cursor.fetchall()]
        cursor.execute(
            # A sequence some column's default calls (a serial column's); identity columns' own
            # sequences are used by INSERT without any privilege on them.
            "SELECT c.relname, EXISTS (SELECT 1 FROM pg_depend dep JOIN pg_attrdef d "
            "ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid WHERE dep.refobjid = c.oid) "
            "FROM pg_class c WHERE c.relkind = 'S' AND c.relnamespace = current_schema()::regnamespace "
            "ORDER BY 1"
        )
        sequences = cursor.fetchall()
    owned = owned_tables(connection, role)
    if owned:
        raise RoleProblem(
            f"Role {role!r} owns {len(owned)} table(s) ({', '.join(owned[:5])}): an owner can alter, "
            f"disable triggers on and drop them. Run REASSIGN OWNED BY {quote(role)} TO {quote(owner)}; "
            "as a superuser first."
        )
    app, schema_q = quote(role), quote(schema)
    statements = [
        f"GRANT CONNECT ON DATABASE {quote(database)} TO {app}",
        f"GRANT USAGE ON SCHEMA {schema_q} TO {app}",
        f"REVOKE CREATE ON SCHEMA {schema_q} FROM {app}",
    ]
    for table in tables:
        statements.append(f"REVOKE ALL ON TABLE {schema_q}.{quote(table)} FROM {app}")
        if table != freeze.KEY_TABLE:
            statements.append(f"GRANT {ROW_PRIVILEGES} ON TABLE {schema_q}.{quote(table)} TO {app}")
    for sequence, called_by_default in sequences:
        statements.append(f"REVOKE ALL ON SEQUENCE {schema_q}.{quote(sequence)} FROM {app}")
        if called_by_default:
            statements.append(f"GRANT USAGE ON SEQUENCE {schema_q}.{quote(sequence)} TO {app}")
    statements += [
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} GRANT {ROW_PRIVILEGES} ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} REVOKE ALL ON SEQUENCES FROM {app}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema_q} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
    ]
    return statements


def apply(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    """Run the statements in one transaction (all or nothing)."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def connections_problems(alias: str = "default") -> list[str]:
    """Why this process's connection is not a least-privileged application role: it is a
    superuser, or it owns protected tables. Empty when it is not PostgreSQL."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return []
    role, superuser = current_role(connection)
    problems = []
    if superuser:
        problems.append(f"connects as {role!r}, a superuser")
    owned = sorted(protected_tables(owned_tables(connection, role)))
    if owned:
        problems.append(f"connects as {role!r}, the owner of {len(owned)} protected table(s)")
    return problems
