"""The write guard: an execute wrapper on every Django connection that refuses writes in deploy mode.

Each statement is classified once (deployguard.sql_writes; the verdict is cached by its SQL
text); only a statement that writes to a protected table asks whether deploy mode is on, so
reads never pay a query for the guard. A write to a sealed table (deployguard.seal) must also run
inside its seal's block, deploy mode or not. On SQLite an authorizer (deployguard.sqlite_authorizer)
judges what goes around the wrapper; on both engines the database's own freeze
(deployguard.freeze) refuses what goes around deployguard altogether.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from django.core.signals import setting_changed
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from deployguard import freeze, seal, sql_writes, sqlite_authorizer, state, tables
from deployguard.allowances import (
    own_records_allowed,
    schema_change_allowed,
    schema_changes_allowed,
    writes_allowed,
)
from deployguard.exceptions import DeployModeActive
from deployguard.sql_writes import UNKNOWN_TABLE
from deployguard.sqlite_authorizer import JUDGED_ATTRIBUTE
from deployguard.status import DeployModeStatus
from deployguard.tables import SWITCH_TABLES, is_protected

refusal_listeners: list[Callable[[DeployModeActive], None]] = []
"""Called with each refusal before it is raised, so a refusal the writing code catches and
swallows is still seen: deploy_safe's migrate subprocess reports every one."""

Check = tuple[str, str, bool]  # (verb, table, whether the table is the deploy-mode switch)
Verdict = tuple[tuple[Check, ...], tuple[tuple[str, str], ...]]  # (deploy-mode checks, sealed writes)
NOTHING_TO_JUDGE: Verdict = ((), ())

# What the wrapper must judge in each statement, by its SQL text: a Check for each write whose
# table is protected or is the switch, in order, and the writes the seal judges. Both empty for a
# read and for a write to unprotected, unsealed tables only, which then pass after one dict lookup.
# Which tables are protected depends on settings, so a settings change empties it (clear_caches),
# as sealing a table does; it is emptied too when it fills up.
_checks: dict[str, Verdict] = {}
STATEMENT_CACHE_LIMIT = 4096


def statements_cached() -> int:
    """How many statements' verdicts the guard keeps (at most STATEMENT_CACHE_LIMIT)."""
    return len(_checks)


def is_cached(sql: Any) -> bool:
    """Whether the guard judges `sql` from its cache rather than classifying it again."""
    try:
        return sql in _checks
    except TypeError:  # unhashable: never cached
        return False


def _checks_for(sql: Any) -> Verdict:
    targets = sql_writes.write_targets(sql)
    checks = tuple(
        (verb, table, table in SWITCH_TABLES)
        for verb, table in targets
        if table in SWITCH_TABLES or is_protected(table)
    )
    verdict = (checks, seal.sealed_writes(targets)) if targets else NOTHING_TO_JUDGE
    if isinstance(sql, str) and len(sql) <= 4096:  # bulk statements: not worth keeping
        if len(_checks) >= STATEMENT_CACHE_LIMIT:
            _checks.clear()
        _checks[sql] = verdict
    return verdict


class WriteGuard:
    """Django execute wrapper: refuses writes to protected tables while deploy mode is on."""

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: Any,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        # Runs for every statement: the common paths (a read; a write with deploy mode off)
        # take as few steps as they can.
        try:
            checks, sealed = _checks[sql]
        except (KeyError, TypeError):  # not seen yet; or not a str (bytes, psycopg.sql)
            checks, sealed = _checks_for(sql)
        if not checks:
            if sealed:
                seal.check(sealed)
            return execute(sql, params, many, context)
        if writes_allowed():
            return _through_the_freeze(execute, sql, params, many, context)
        if not checks[0][2] and not schema_changes_allowed():
            verb, table, _ = checks[0]  # a protected table, no allowance: refused if deploy mode is on
        else:
            refused = _first_refused(checks)
            if refused is None:
                if sealed:
                    seal.check(sealed)
                if own_records_allowed():  # deployguard's own records: through its freeze too
                    return _through_the_freeze(execute, sql, params, many, context)
                return execute(sql, params, many, context)
            verb, table = refused
        status = state.current()
        if status.enabled:
            raise _refusal(verb, table, status)
        # Deploy mode first (its refusal is the one a deploy counts), then the seal.
        if sealed:
            seal.check(sealed)
        # Hand the state just read to SQLite's authorizer, which may not read it itself.
        judged = getattr(context["connection"], JUDGED_ATTRIBUTE, None)
        if judged is not None:
            previous = judged[0]
            judged[0] = status
        try:
            return execute(sql, params, many, context)
        except DatabaseError as error:
            # The state this process trusted said off; the database's freeze says on.
            if freeze.is_refusal(error):
                raise _refused_by_database(verb, table, context["connection"]) from error
            raise
        finally:
            if judged is not None:
                judged[0] = previous


def _through_the_freeze(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Run a statement deployguard allows, let through the database's freeze too (deployguard.freeze)."""
    cursor = context["cursor"]
    raw = getattr(cursor, "cursor", cursor)
    return freeze.run_allowed(context["connection"], raw, lambda: execute(sql, params, many, context))


def _first_refused(checks: tuple[Check, ...]) -> tuple[str, str] | None:
    """The first write that needs deploy mode off, the allowances in force considered."""
    schema_only = schema_changes_allowed()
    for verb, table, switch in checks:
        if switch and state.switch_writes_allowed():
            continue
        if schema_only and schema_change_allowed(verb, table):
            continue
        return verb, table
    return None


def _refused_by_database(verb: str, table: str, connection: BaseDatabaseWrapper) -> DeployModeActive:
    """PostgreSQL's trigger refused a write this process let through on a cached "off": the
    same refusal the guard raises, so callers (the middleware's 503) see no difference."""
    state.clear_cache()
    status = DeployModeStatus(enabled=True, source="database", reason="refused by the database")
    if not connection.in_atomic_block:  # else the transaction is aborted: no query now
        with contextlib.suppress(DatabaseError):
            status = state.current()
    return _refusal(verb, table, status)


def _refusal(verb: str, table: str, status: DeployModeStatus) -> DeployModeActive:
    """The refusal of `verb` on `table`, told to the listeners before it is raised."""
    where = "a table it could not name" if table == UNKNOWN_TABLE else f'"{table}"'
    refusal = DeployModeActive(f"{verb} on {where}", status)
    for listener in refusal_listeners:
        listener(refusal)
    return refusal


write_guard = WriteGuard()


def install(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Put the guard on a connection (idempotent): the connection_created receiver. On SQLite
    also the authorizer."""
    if write_guard not in connection.execute_wrappers:
        connection.execute_wrappers.append(write_guard)
    seal.install(connection)
    if connection.vendor == "sqlite" and connection.connection is not None:
        sqlite_authorizer.install(connection)


def is_installed(connection: BaseDatabaseWrapper) -> bool:
    return write_guard in connection.execute_wrappers


def clear_caches(*, setting: str, **kwargs: Any) -> None:
    """setting_changed receiver: what was worked out from DEPLOYGUARD_* settings is worked out again."""
    if setting.startswith("DEPLOYGUARD_"):
        tables.clear_caches()
        _checks.clear()
        state.clear_cache()


def _forget_verdicts() -> None:
    _checks.clear()


seal.listeners.append(_forget_verdicts)


def connect_receivers() -> None:
    connection_created.connect(install, dispatch_uid="deployguard.guard.install")
    setting_changed.connect(clear_caches, dispatch_uid="deployguard.guard.reset")
    for alias in connections:
        connection = connections[alias]
        if connection.connection is not None:  # opened before the app was ready
            install(connection)
