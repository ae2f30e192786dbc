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
from collections.abc import Iterable
from pathlib import Path

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections

from deployguard import freeze, pg_tools
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


def restore(backup: Path, using: str, tables: Iterable[str]) -> None:
    """Put the database back as the dump at `backup` holds it (`tables`: the protected tables it
    holds; others are dropped first). While the database is frozen, the restored tables are
    frozen from the moment other sessions can see them, whatever freeze the dump carried.
    BackupError when a tool failed: then nothing was restored."""
    tables = set(tables)
    epilogue = _refrozen_sql(using, tables)
    if epilogue:  # before anything is touched: BackupError when a tool is missing
        pg_tools.executable("psql")
    _drop_tables_not_in(tables, using)
    connections[using].close()
    env = pg_tools.postgres_environment(using)
    name = str(connections[using].settings_dict["NAME"])
    if not epilogue:
        pg_tools.run(["pg_restore", "--single-transaction", *CLEAN, "--dbname", name, str(backup)], env)
        return
    _restore_through_psql(backup, name, env, epilogue)


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
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            (schema,) = cursor.fetchone()
        qualified = f"{connection.ops.quote_name(schema)}.{connection.ops.quote_name(table)}"
        document = json.dumps(row, cls=DjangoJSONEncoder)
        # A backup whose table has another shape (a NOT NULL column since dropped) would fail
        # this: then the row stays as restored until kept_own_records() writes it, the freeze on.
        body = (
            f"BEGIN DELETE FROM {qualified}; INSERT INTO {qualified} SELECT * FROM "  # noqa: S608
            f"json_populate_record(NULL::{qualified}, {connection.ops.compose_sql('%s', [document])}); "
            "EXCEPTION WHEN others THEN NULL; END"
        )
        statements.append(f"DO {freeze.dollar_quoted(body)};")
    return "\n".join(statements)


def _restore_through_psql(backup: Path, name: str, env: dict[str, str], epilogue: str) -> None:
    """pg_restore's SQL piped into psql inside BEGIN ... `epilogue` COMMIT. COMMIT is sent only
    once pg_restore has exited 0; psql stops at the first error (ON_ERROR_STOP), and a psql that
    ends without COMMIT leaves the database as it was."""
    restore_command = ["pg_restore", *CLEAN, "--file", "-", str(backup)]
    psql_command = ["psql", "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", name]
    with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as psql_errors:
        restore = subprocess.Popen(  # noqa: S603
            [pg_tools.executable(restore_command[0]), *restore_command[1:]], env=env,
            stdout=subprocess.PIPE, stderr=restore_errors,
        )  # fmt: skip
        psql = subprocess.Popen(  # noqa: S603
            [pg_tools.executable(psql_command[0]), *psql_command[1:]], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_errors,
        )  # fmt: skip
        assert restore.stdout is not None and psql.stdin is not None
        committed = False  # COMMIT sent
        try:
            with contextlib.suppress(BrokenPipeError):  # psql stopped at an error: its output says which
                psql.stdin.write(b"BEGIN;\n")
                shutil.copyfileobj(restore.stdout, psql.stdin, 1 << 20)
                if restore.wait() == 0:
                    psql.stdin.write(epilogue.encode() + b"\nCOMMIT;\n")
                    psql.stdin.flush()
                    committed = True
        finally:
            if not committed:  # without COMMIT the server rolls the transaction back
                for process in (restore, psql):
                    process.kill()
            with contextlib.suppress(BrokenPipeError):
                psql.stdin.close()
            restore.wait()
            psql.wait()
        if psql.returncode not in (0, -signal.SIGKILL):
            psql_errors.seek(0)
            raise pg_tools.failed("psql", psql.returncode, psql_errors.read().decode(errors="replace"))
        if not committed:
            restore_errors.seek(0)
            raise pg_tools.failed(
                "pg_restore", restore.returncode, restore_errors.read().decode(errors="replace")
            )
