"""PostgreSQL: where the protected tables' sequences stand, in a dump and in the database.

nextval() is not transactional: an INSERT rolled back, or a bare nextval(), moves a sequence
without writing any table, so a proof by the tables' writes (deployguard.written_pg) does not see
it. A restore that set a sequence back would hand out ids again. So deploy_safe compares the
sequences its dump holds (the setval() pg_restore would run) with where they stand at the freeze.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from django.db import connections

from deployguard import pg_tools
from deployguard.tables import protected_tables

Position = int | None
"""A sequence's last value, or None when nextval() was never called on it."""

_SETVAL = re.compile(r"setval\('(.+?)', (\d+), (true|false)\)")


def in_scope(*, using: str = "default") -> dict[str, tuple[str | None, Position]]:
    """Each sequence of the current schema a protected table owns (serial or identity), or that
    no table owns (a DEFAULT nextval() of its own), by its qualified name as pg_dump writes it:
    the owning table (None for one nobody owns), and the sequence's position now. Sequences of
    other tables are left out: those tables are not the proof's to vouch for."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname), t.relname, "
            "pg_sequence_last_value(s.oid) FROM pg_class s "
            "JOIN pg_namespace n ON n.oid = s.relnamespace "
            "LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass "
            "AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
            "LEFT JOIN pg_class t ON t.oid = d.refobjid "
            "WHERE s.relkind = 'S' AND n.nspname = current_schema()"
        )
        rows = cursor.fetchall()
    protected = protected_tables({table for _, table, _ in rows if table is not None})
    return {
        name: (table, None if value is None else int(value))
        for name, table, value in rows
        if table is None or table in protected
    }


def in_dump(path: Path, *, using: str = "default") -> dict[str, Position]:
    """The position of every sequence a custom-format dump sets (pg_restore's SEQUENCE SET entries)."""
    env = pg_tools.postgres_environment(using)
    listed = subprocess.run(  # noqa: S603
        [pg_tools.executable("pg_restore"), "--list", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries = [line for line in listed.splitlines() if " SEQUENCE SET " in line and not line.startswith(";")]
    if not entries:
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".list") as chosen:
        chosen.write("\n".join(entries) + "\n")
        chosen.flush()
        sql = subprocess.run(  # noqa: S603
            [pg_tools.executable("pg_restore"), "--use-list", chosen.name, "--file", "-", str(path)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    return {name: (int(value) if called == "true" else None) for name, value, called in _SETVAL.findall(sql)}


def moved(dumped: dict[str, Position], *, using: str = "default") -> dict[str, str | None]:
    """The sequences in scope (in_scope()) that stand elsewhere now than in the dump (or are not
    in it), each with the table that owns it (None: no table does)."""
    now = in_scope(using=using)
    return {
        name: table for name, (table, position) in sorted(now.items()) if dumped.get(name, -1) != position
    }
