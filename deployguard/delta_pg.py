"""PostgreSQL: the tables written between deploy_safe's dump and the freeze, dumped again alone.

deploy_safe dumps the database before the freeze, while the site still writes. When the write log
shows that some tables were written before the freeze refused writes, only those tables' rows (and
their sequences) are dumped again, under the freeze, into a second file beside the dump: its
delta. The manifest names the delta (`extra["delta"]`: file, size, SHA-256, tables) and holds the
fingerprints at the freeze, so the pair is restored and verified as one backup: the dump, then in
the same transaction those tables emptied and loaded from the delta (deployguard.restore_pg).

A delta is taken only when that replay cannot fail or reach other tables: each written table has
the columns it had at the dump, and every foreign key referencing it is DEFERRABLE with NO ACTION
(Django's are), so emptying and reloading it is checked once, at COMMIT, and cascades nowhere.
Otherwise deploy_safe dumps the whole database again, under the freeze, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.db import connections

from deployguard import pg_tools
from deployguard.files import durable
from deployguard.freeze import dollar_quoted
from deployguard.pg_tools import BackupError

KEY = "delta"  # in the manifest's `extra`
SUFFIX = ".delta"


@dataclass(frozen=True)
class Delta:
    file: str  # its name, in the backup's directory
    size: int
    sha256: str
    tables: list[str]

    @classmethod
    def of(cls, extra: Any) -> Delta | None:
        """The delta a manifest's `extra` names; None when it names none. ValueError when what
        it names is not a delta (a manifest is a file anyone may edit)."""
        named = extra.get(KEY) if isinstance(extra, dict) else None
        if named is None:
            return None
        try:
            delta = cls(**named)
        except TypeError as error:
            raise ValueError(f"its delta is not one deploy_safe writes ({error})") from None
        sound = (
            isinstance(delta.file, str)
            and delta.file == Path(delta.file).name
            and delta.file not in ("", ".", "..")
            and isinstance(delta.size, int)
            and isinstance(delta.sha256, str)
            and isinstance(delta.tables, list)
            and all(isinstance(table, str) for table in delta.tables)
        )
        if not sound:
            raise ValueError("its delta is not one deploy_safe writes")
        return delta

    def path(self, backup: Path) -> Path:
        return backup.with_name(self.file)

    def as_extra(self) -> dict[str, Any]:
        return {KEY: asdict(self)}


def replay_problems(tables: Iterable[str], *, using: str) -> list[str]:
    """Why `tables` could not be emptied and reloaded inside a restore's transaction. Empty when
    they can. Each of these would make the replay fail, or change what it loads:
    - a foreign key referencing one that is not DEFERRABLE, or whose ON DELETE or ON UPDATE is
      not NO ACTION (the emptying would be refused, or would cascade);
    - a rule on one other than a view's SELECT (DISABLE TRIGGER leaves rules on: a DO INSTEAD
      NOTHING keeps the old rows, a DO ALSO writes elsewhere);
    - a constraint added NOT VALID on one (rows the dump loads before it exists would meet it)."""
    names = sorted(set(tables))
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.conname, c.conrelid::regclass::text, t.relname, c.condeferrable, "
            "c.confdeltype, c.confupdtype FROM pg_constraint c JOIN pg_class t ON t.oid = c.confrelid "
            "WHERE c.contype = 'f' AND t.relnamespace = current_schema()::regnamespace "
            "AND t.relname = ANY(%s) ORDER BY 1",
            [names],
        )
        keys = cursor.fetchall()
        cursor.execute(
            "SELECT r.rulename, t.relname FROM pg_rewrite r JOIN pg_class t ON t.oid = r.ev_class "
            "WHERE r.ev_type <> '1' AND t.relnamespace = current_schema()::regnamespace "
            "AND t.relname = ANY(%s) ORDER BY 2, 1",
            [names],
        )
        rules = cursor.fetchall()
        cursor.execute(
            "SELECT c.conname, t.relname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE NOT c.convalidated AND t.relnamespace = current_schema()::regnamespace "
            "AND t.relname = ANY(%s) ORDER BY 2, 1",
            [names],
        )
        unvalidated = cursor.fetchall()
    problems = [
        f"{name} on {referencing} references {referenced}, "
        + ("and is not DEFERRABLE" if not deferrable else "with an ON DELETE or ON UPDATE action")
        for name, referencing, referenced, deferrable, on_delete, on_update in keys
        if not deferrable or on_delete != "a" or on_update != "a"
    ]
    problems += [f"the rule {rule} on {table}" for rule, table in rules]
    problems += [f"{name} on {table} is NOT VALID" for name, table in unvalidated]
    return problems


def large_objects(*, using: str) -> bool:
    """Whether the database holds large objects: neither the write log nor the freeze sees their
    writes, so a dump taken before the freeze cannot be proved to hold them as at the freeze."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata)")
        return bool(cursor.fetchone()[0])


def _pattern(schema: str, table: str) -> str:
    """pg_dump's --table pattern matching exactly this table (quoted: no wildcard, any case)."""
    return ".".join('"' + name.replace('"', '""') + '"' for name in (schema, table))


def take(backup: Path, tables: list[str], *, using: str, temporary_prefix: str) -> Delta:
    """Dump the rows of `tables` (and their sequences) into the delta beside `backup`, checked,
    hashed and written through to the disk; made under a name starting `temporary_prefix` (what
    `deploy_safe --recover` removes after a kill). BackupError when it could not be; nothing is
    left."""
    from deployguard.backup import sha256_of  # backup restores through restore_pg, which reads deltas

    target = backup.with_name(backup.name + SUFFIX)
    if target.exists() or target.is_symlink():
        raise BackupError(f"{target} exists already: move it away, or use another backup directory.")
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    env = pg_tools.postgres_environment(using)
    handle, name = tempfile.mkstemp(prefix=f"{temporary_prefix}{target.name}.", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        chosen = [f"--table={_pattern(schema, table)}" for table in sorted(tables)]
        dump = ["pg_dump", "--format=custom", "--data-only", "--strict-names", *chosen, "--file", name]
        pg_tools.run(dump, env)
        pg_tools.run(["pg_restore", "--list", name], env)
        digest, size = sha256_of(temporary), temporary.stat().st_size
        durable(temporary)
        os.link(temporary, target)
        durable(target)
    finally:
        temporary.unlink(missing_ok=True)
    return Delta(target.name, size, digest, sorted(tables))


def remove(backup: Path, extra: Any) -> None:
    """Remove the delta a backup's manifest names, if any, and one left by a deploy killed before
    the manifest named it (when the backup itself goes)."""
    backup.with_name(backup.name + SUFFIX).unlink(missing_ok=True)
    with contextlib.suppress(ValueError):
        delta = Delta.of(extra)
        if delta is not None:
            delta.path(backup).unlink(missing_ok=True)


def emptied_sql(schema: str, tables: list[str], literal: Any) -> str:
    """Inside a restore's transaction, after the dump: the foreign keys deferred to COMMIT, then
    each of `tables` emptied with its own triggers off (their states kept in a temporary table):
    the site's triggers must not fire for rows that are only put back."""
    names, space = literal(sorted(tables)), literal(schema)
    loop = f"""
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY {names}::text[] LOOP
        EXECUTE format('ALTER TABLE %I.%I DISABLE TRIGGER USER', {space}, name);
        EXECUTE format('DELETE FROM %I.%I', {space}, name);
    END LOOP;
END
"""  # noqa: S608 (constants; values quoted by the driver)
    return f"""
SET CONSTRAINTS ALL DEFERRED;
CREATE TEMPORARY TABLE deployguard_replayed_triggers ON COMMIT DROP AS
    SELECT c.relname AS name, t.tgname AS trigger, t.tgenabled AS enabled
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal AND n.nspname = {space} AND c.relname = ANY({names}::text[]);
DO {dollar_quoted(loop)};
"""  # noqa: S608 (constants; values quoted by the driver)


def counted_sql(schema: str, counts: dict[str, int], literal: Any) -> str:
    """Before COMMIT: each replayed table holds as many rows as the manifest says, or the
    transaction fails and the restore with it, whole (the fingerprints after it check the rest)."""
    wanted_counts = literal(json.dumps(counts))
    loop = f"""
DECLARE name text; wanted bigint; found bigint;
BEGIN
    FOR name, wanted IN SELECT key, value::bigint FROM pg_catalog.jsonb_each_text({wanted_counts}::jsonb) LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I', {literal(schema)}, name) INTO found;
        IF found <> wanted THEN
            RAISE EXCEPTION 'the delta''s replay left % rows in %, not %: nothing was restored',
                found, name, wanted;
        END IF;
    END LOOP;
END
"""  # noqa: S608 (values quoted by the driver)
    return f"DO {dollar_quoted(loop)};\n"


def triggers_back_sql(schema: str, literal: Any) -> str:
    """After the delta's rows: the foreign keys checked, then each trigger of the replayed
    tables as the dump left it."""
    space = literal(schema)
    loop = f"""
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM pg_temp.deployguard_replayed_triggers LOOP
        EXECUTE format('ALTER TABLE %I.%I %s TRIGGER %I', {space}, r.name,
            CASE r.enabled WHEN 'O' THEN 'ENABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                           WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'DISABLE' END, r.trigger);
    END LOOP;
END
"""  # noqa: S608 (a constant table; values quoted by the driver)
    # The deferred checks run now, the rows back in place: no trigger event is left pending,
    # and ALTER TABLE refuses a table that has one.
    return f"SET CONSTRAINTS ALL IMMEDIATE;\nDO {dollar_quoted(loop)};\n"
