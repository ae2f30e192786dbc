"""How the public site's reads run their SQL: through Django's cursor, and on PostgreSQL prepared.

Django's cursor keeps its execute wrappers in the way (deployguard's write guard, query
logging). On PostgreSQL the statements are prepared, with generic plans and without JIT:
see _PreparedCursor.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

try:
    from django.db.backends.postgresql.base import ServerBindingCursor
except ImportError:  # psycopg 2, or no psycopg: SQLite only
    ServerBindingCursor = None


def fetch(sql: str, params: list[Any] | tuple[Any, ...]) -> list[dict[str, Any]]:
    """Run a public read through Django's cursor (and so its execute wrappers: the write guard, query
    logging); on PostgreSQL as a prepared statement (see _PreparedCursor). Rows as dicts."""
    with _prepared_cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def fetch_one(sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    with _prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


if ServerBindingCursor is not None:

    class _PreparedCursor(ServerBindingCursor):
        """Binds parameters on the server and asks it to keep each statement's plan for the connection.

        Planning a public read (the rules' dozen subqueries) costs PostgreSQL several times
        what running it does; Django's own cursors bind on the client and never prepare. With
        persistent connections (CONN_MAX_AGE) each statement is planned once per connection.
        The connection also uses generic plans and no JIT (see _prepared_cursor).
        DOCUMENTS_PREPARED_READS=False turns all of it off, for a transaction-pooling PgBouncer,
        which keeps no session state.
        """

        def execute(
            self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any
        ) -> Any:
            return super().execute(query, params, prepare=True, **kwargs)


@contextmanager
def _prepared_cursor() -> Iterator[Any]:
    prepared = connection.vendor == "postgresql" and getattr(settings, "DOCUMENTS_PREPARED_READS", True)
    if not prepared:
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    raw = connection.connection
    # Django turns psycopg's preparing off for the connection (prepare_threshold=None), so that
    # its own statements work through poolers; this cursor turns it on for its statements only.
    default_factory, default_threshold = raw.cursor_factory, raw.prepare_threshold
    raw.cursor_factory = _PreparedCursor  # for the one cursor Django creates next, in this thread
    try:
        cursor = connection.cursor()
    finally:
        raw.cursor_factory = default_factory
    raw.prepare_threshold = 0
    try:
        with cursor:
            if raw not in _configured:
                # Once per connection. Generic plans: these statements read by index ranges whatever
                # their values, and PostgreSQL would otherwise plan each execution again (milliseconds)
                # whenever a generic plan's estimate looks worse than planning. Without JIT: a generic
                # plan's estimate can be high enough to compile it to machine code at every execution
                # (seconds, for plans that then run in a millisecond).
                cursor.execute("SET plan_cache_mode = force_generic_plan")
                cursor.execute("SET jit = off")
                _configured.add(raw)
            yield cursor
    finally:
        raw.prepare_threshold = default_threshold


_configured: weakref.WeakSet[Any] = weakref.WeakSet()  # psycopg connections given the settings above


def aware(value: Any) -> datetime | None:
    """A datetime from either engine: SQLite hands back text, or a naive UTC datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if isinstance(value, datetime) and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value
