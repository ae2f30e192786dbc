"""The ways through deploy mode: `allow_writes(reason)`, and the narrower schema-change allowance.

Each is a block (this thread or task only, never inherited by threads it starts), logged with
its reason. The write guard, SQLite's authorizer and the database's freeze all ask here, and
nowhere else, whether a write may pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from deployguard.sql_writes import DDL_VERBS, UNKNOWN_TABLE
from deployguard.tables import migrate_writable_tables

logger = logging.getLogger("deployguard")

REASON_REQUIRED = "allow_writes() needs a reason: it is logged with every block it opens."

_allowed: ContextVar[str | None] = ContextVar("deployguard_allow_writes", default=None)
_schema_allowed: ContextVar[str | None] = ContextVar("deployguard_allow_schema_changes", default=None)
_process_schema_reason: str | None = None
_own_records: ContextVar[str | None] = ContextVar("deployguard_own_records", default=None)


@contextmanager
def _allowing(allowance: ContextVar[str | None], reason: str) -> Iterator[None]:
    token = allowance.set(reason)
    try:
        yield
    finally:
        allowance.reset(token)


def _required(reason: str) -> str:
    if not reason or not reason.strip():
        raise ValueError(REASON_REQUIRED)
    return reason


@contextmanager
def allow_writes(reason: str) -> Iterator[None]:
    """Let this block write while deploy mode is on (this thread or task only). Logged.

    For the deploy pipeline's own bookkeeping and schema changes; not inherited by threads
    the block starts.
    """
    _required(reason)
    logger.warning("Writes allowed through deploy mode: %s", reason)
    try:
        with _allowing(_allowed, reason):
            yield
    finally:
        logger.info("Writes allowed through deploy mode: done: %s", reason)


def writes_allowed() -> bool:
    """True inside an `allow_writes()` block (or the switch's own DDL, switch_ddl())."""
    return _allowed.get() is not None


@contextmanager
def switch_ddl() -> Iterator[None]:
    """The database freeze's own DDL (its triggers) passes SQLite's authorizer: part of the
    switch, like the state row, so not logged as an allowance."""
    with _allowing(_allowed, "the deploy-mode switch's triggers"):
        yield


# --- deployguard's own records (deployguard.tables.SWITCH_TABLES) ---------------------------


@contextmanager
def own_records(what: str) -> Iterator[None]:
    """deployguard's own code writing its own records (the switch, a deploy record, a scrub
    run): the only writes those tables take in deploy mode, from the guard and the freeze."""
    with _allowing(_own_records, what):
        yield


def own_records_allowed() -> bool:
    """True inside own_records(): deployguard's own records may be written in deploy mode."""
    return _own_records.get() is not None


# --- the narrower way through, for `migrate` during a deploy -------------------------------


@contextmanager
def allow_schema_changes(reason: str) -> Iterator[None]:
    """Let this block change the schema (not the data) while deploy mode is on. Logged.

    DDL passes on any table, and DML on the bookkeeping tables only; every other write to a
    protected table is still refused. For `migrate` during a deploy.
    """
    _required(reason)
    logger.warning("Schema changes allowed through deploy mode: %s", reason)
    with _allowing(_schema_allowed, reason):
        yield


def allow_schema_changes_for_process(reason: str) -> None:
    """`allow_schema_changes` for the whole process: deploy_safe's migrate subprocess."""
    global _process_schema_reason
    _required(reason)
    logger.warning("Schema changes allowed through deploy mode for this process: %s", reason)
    _process_schema_reason = reason


def schema_changes_allowed() -> bool:
    return _schema_allowed.get() is not None or _process_schema_reason is not None


def schema_change_allowed(verb: str, table: str) -> bool:
    """What the schema-change allowance lets through: DDL on any table, rows of the bookkeeping
    tables, and the copy into SQLite's `new__<table>` when it rebuilds a table."""
    if verb in DDL_VERBS and table != UNKNOWN_TABLE:
        return True
    if verb == "INSERT" and table.startswith("new__"):
        return True
    return table in migrate_writable_tables()
