"""Restoring a PostgreSQL dump (backup.restore_database checks it first and proves it after).

`pg_restore --single-transaction --clean --if-exists`, so a failed restore changes nothing. While
the database is frozen (deploy mode on), `pg_restore --clean` alone would bring the tables back
as the dump holds them: a dump taken before the freeze (deploy_safe's) holds no freeze, and a
writer queued behind the restore's locks would write between its commit and the freeze being
installed again. So then its SQL goes through psql, in one transaction that ends by installing
the freeze and writing the deploy-mode row as it stands."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections

from deployguard import delta_pg, freeze, pg_tools
from deployguard.delta_pg import Delta
from deployguard.pg_tools import BackupError
from deployguard.tables import protected_tables

CLEAN = ["--clean", "--if-exists", "--no-owner"]


def _drop_tables_not_in(tables: Iterable[str], using: str) -> list[str]:
    """Drop the protected tables the backup does not hold (made after it, by a failed migrate, say):
    `pg_restore --clean` drops only what is in the dump, so they would survive the restore."""
    connection = connections[using]
    with connection.cursor() as cursor:
        extra = sorted(protected_tables(connection.introspection.table_names(cursor)) - set(tables))
        for table in extra:
            cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)} CASCADE")
    return extra


def restore(
    backup: Path, using: str, fingerprints: Mapping[str, Mapping[str, Any]], delta: Delta | None = None
) -> None:
    """Put the database back as the dump at `backup` holds it (`fingerprints`: its manifest's, by
    protected table; other protected tables are dropped first), then, in the same transaction,
    the tables of its `delta` (deployguard.delta_pg) as the delta holds them, each proved to hold
    the manifest's count of rows before COMMIT. While the database is frozen, the restored
    tables are frozen from the moment other sessions can see them, whatever freeze the dump
    carried. BackupError when a tool failed: then nothing was restored."""
    tables = set(fingerprints)
    epilogue = _refrozen_sql(using, tables)
    if epilogue or delta:  # before anything is touched: BackupError when a tool is missing
        pg_tools.executable("psql")
    schema = _schema(using)
    _drop_tables_not_in(tables, using)
    connections[using].close()
    env = pg_tools.postgres_environment(using)
    name = str(connections[using].settings_dict["NAME"])
    if not epilogue and not delta:
        pg_tools.run(["pg_restore", "--single-transaction", *CLEAN, "--dbname", name, str(backup)], env)
        return
    parts: list[str | list[str]] = [["pg_restore", *CLEAN, "--file", "-", str(backup)]]
    if delta:
        literal = _literal(using)
        parts += [
            delta_pg.emptied_sql(schema, delta.tables, literal),
            ["pg_restore", "--data-only", "--file", "-", str(delta.path(backup))],
            delta_pg.triggers_back_sql(schema, literal),
            delta_pg.counted_sql(schema, {t: int(fingerprints[t]["count"]) for t in delta.tables}, literal),
        ]
    parts.append(epilogue)
    _through_psql(parts, name, env)


def _schema(using: str) -> str:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        return str(cursor.fetchone()[0])


def _literal(using: str) -> Callable[[Any], str]:
    connection = connections[using]
    return lambda value: connection.ops.compose_sql("%s", [value])


def _refrozen_sql(using: str, tables_in_backup: set[str]) -> str:
    """While the database is frozen: the statements that end its restore's transaction (the
    freeze on every freezable table the restore leaves, then the deploy-mode row as it is now),
    else ''."""
    connection = connections[using]
    if not any(freeze.frozen_tables(connection).values()):
        return ""
    tables = set(freeze.freezable_tables(connection)) | {
        t for t in tables_in_backup if freeze.is_freezable(t)
    }
    statements = [freeze.refreeze_sql(connection, tables)]
    from deployguard.models import DeployModeState

    table = DeployModeState._meta.db_table
    row = DeployModeState.objects.using(using).values().first()
    if row is not None:
        quote = connection.ops.quote_name
        qualified = f"{quote(_schema(using))}.{quote(table)}"
        document = _literal(using)(json.dumps(row, cls=DjangoJSONEncoder))
        # A backup whose table has another shape (a NOT NULL column since dropped) would fail
        # this: then the row stays as restored until kept_own_records() writes it, the freeze on.
        body = (
            f"BEGIN DELETE FROM {qualified}; INSERT INTO {qualified} SELECT * FROM "  # noqa: S608
            f"json_populate_record(NULL::{qualified}, {document}); "
            "EXCEPTION WHEN others THEN NULL; END"
        )
        statements.append(f"DO {freeze.dollar_quoted(body)};")
    return "\n".join(statements)


def _through_psql(parts: list[str | list[str]], name: str, env: dict[str, str]) -> None:
    """Each part, in order, piped into one psql inside BEGIN ... COMMIT: SQL text as it is, a
    pg_restore command (writing its script to stdout) as it runs. COMMIT is sent only once every
    pg_restore has exited 0; psql stops at the first error (ON_ERROR_STOP), and a psql that ends
    without COMMIT leaves the database as it was."""
    psql_command = ["psql", "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", name]
    with tempfile.TemporaryFile() as psql_errors:
        psql = subprocess.Popen(  # noqa: S603
            [pg_tools.executable(psql_command[0]), *psql_command[1:]], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_errors,
        )  # fmt: skip
        assert psql.stdin is not None
        committed = False  # COMMIT sent
        failed: BackupError | None = None
        try:
            with contextlib.suppress(BrokenPipeError):  # psql stopped at an error: its output says which
                psql.stdin.write(b"BEGIN;\n")
                for part in parts:
                    if isinstance(part, str):
                        psql.stdin.write(part.encode() + b"\n")
                    elif (failed := _streamed(part, psql.stdin, env)) is not None:
                        break
                else:
                    psql.stdin.write(b"COMMIT;\n")
                    psql.stdin.flush()
                    committed = True
        finally:
            if not committed:  # without COMMIT the server rolls the transaction back
                psql.kill()
            with contextlib.suppress(BrokenPipeError):
                psql.stdin.close()
            psql.wait()
        if psql.returncode not in (0, -signal.SIGKILL):
            psql_errors.seek(0)
            raise pg_tools.failed("psql", psql.returncode, psql_errors.read().decode(errors="replace"))
        if failed is not None:
            raise failed


def _streamed(command: list[str], into: IO[bytes], env: dict[str, str]) -> BackupError | None:
    """Run `command`, copying its stdout into `into`; its failure (None when it exited 0).
    Killed if the copy fails (psql gone: BrokenPipeError goes on to the caller)."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603
            [pg_tools.executable(command[0]), *command[1:]], env=env, stdout=subprocess.PIPE, stderr=errors
        )
        assert process.stdout is not None
        try:
            shutil.copyfileobj(process.stdout, into, 1 << 20)
        except BaseException:
            process.kill()
            raise
        finally:
            process.stdout.close()
            process.wait()
        if process.returncode == 0:
            return None
        errors.seek(0)
        return pg_tools.failed(command[0], process.returncode, errors.read().decode(errors="replace"))
