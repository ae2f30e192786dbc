"""The `numbered_as` lookup: a value is a fixed prefix followed by ASCII digits, checked natively."""

from __future__ import annotations

import re
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Lookup
from django.db.models.lookups import Regex
from django.db.models.sql.compiler import SQLCompiler

_GLOB_SPECIAL = re.compile(r"([*?\[])")


@CharField.register_lookup
class NumberedAs(Lookup):
    """`Q(ml_number__numbered_as="ML-")` holds when the value is "ML-" and one or more digits.

    SQLite evaluates it with GLOB and PostgreSQL with a native regular expression, so
    it can sit in a CheckConstraint and in integrity rules over a million rows without
    the per-row Python call that Django's REGEXP costs on SQLite.
    """

    lookup_name = "numbered_as"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        return "%s", [value]

    def _prefix(self) -> str:
        if not isinstance(self.rhs, str) or not self.rhs:
            raise ValueError("numbered_as takes a non-empty prefix string, such as 'ML-'.")
        return self.rhs

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        pattern = rf"^{re.escape(self._prefix())}[0-9]+$"
        return Regex(self.lhs, pattern).as_sql(compiler, connection)

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        pattern = rf"^{re.escape(self._prefix())}[0-9]+$"
        return f"({lhs})::text ~ %s", [*lhs_params, pattern]

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        prefix = self._prefix()
        glob_prefix = _GLOB_SPECIAL.sub(r"[\1]", prefix)
        sql = f"({lhs} GLOB %s AND substr({lhs}, %s) NOT GLOB '*[^0-9]*')"
        return sql, [*lhs_params, f"{glob_prefix}[0-9]*", *lhs_params, len(prefix) + 1]
