"""Sealed tables: rows only an app's named writer module may change, enforced on every SQL statement.

An app seals the tables of its models (`Seal.cover()`, in its AppConfig.ready()); from then on the
write guard (deployguard.guard), which sees every statement run on Django's connections, refuses
an INSERT, UPDATE, DELETE, MERGE, COPY or TRUNCATE on a sealed table unless it runs inside
`seal.writing(Model, ...)` for that model. Whatever route the write took makes no difference: a
QuerySet built by hand, a manager created at run time, `raw()`, the ORM's private `_save_table()`,
`_insert()`, `_do_update()`, `_raw_delete()`, a cursor: they all end in one statement here.

`writing()` may only be entered by code of the modules named as the seal's writers (its caller's
module is checked when the block is entered), and it opens only the tables of the models it names:
a signal receiver running inside a service's save cannot write another model's rows through it.
A history table (`cover(history=...)`) takes INSERTs only, and only after the block has written
the table it records: a history row comes with the change it records, never on its own.

Also let through: `deployguard.allow_writes()` blocks (the deploy pipeline's restore, data migrations
an operator allowed) and the statements of Django's schema editor itself (a migration's backfill of a
new column, SQLite's table rebuild), not RunPython's or RunSQL's. Not
covered: SQL sent around Django's execute wrappers (the DB-API connection, `connection.connection`,
or another client); see the README's "What the seal does not stop".
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard.sql_writes import DDL_VERBS, UNKNOWN_TABLE

WRITER_ONLY = "{seal}'s seal can be opened only by {writers} (entered from {caller}): {hint}"
OUTSIDE = '{verb} on "{table}" refused: {seal}\'s tables are written only through {writers}. {hint}'
NOT_NAMED = (
    '{verb} on "{table}" refused: the {writers} block writing now opened only {opened}, not this '
    "table (a receiver or callback running inside it?). {hint}"
)
HISTORY_ALONE = (
    '{verb} on "{table}" refused: a history row is written only by the change it records, in the '
    'same block, and "{recorded}" was not changed in it. {hint}'
)
HISTORY_INSERT_ONLY = '{verb} on "{table}" refused: history rows are added, never changed or deleted. {hint}'
UNKNOWN_TARGET = (
    "{verb} refused: the table it writes cannot be told from its SQL, and {seal}'s tables are sealed; "
    "write them through {writers}. {hint}"
)
NOT_COVERED = "{model} is not sealed by {seal}: cover it before opening the seal for it."

_SCHEMA_VERBS = DDL_VERBS | {"SELECT INTO"}


@dataclass
class _Block:
    """What an open `writing()` block may write, and what it has written (for its history rows)."""

    tables: frozenset[str]
    written: set[str] = field(default_factory=set)


_block: ContextVar[_Block | None] = ContextVar("deployguard_seal_block", default=None)
_schema_editing: ContextVar[bool] = ContextVar("deployguard_seal_schema_editing", default=False)
_by_table: dict[str, Seal] = {}
_seals: list[Seal] = []
listeners: list[Callable[[], None]] = []
"""Called whenever the set of sealed tables changes (the guard forgets its cached verdicts)."""


class Seal:
    """The tables of one app that only its writer modules change."""

    def __init__(
        self,
        name: str,
        *,
        writers: Iterable[str],
        hint: str = "",
        refusal: type[Exception] = PermissionError,
    ) -> None:
        self.name = name
        self.module = sys._getframe(1).f_globals.get("__name__", "")
        self.writers = frozenset(writers)
        self.hint = hint
        self.refusal = refusal
        self.tables: dict[str, frozenset[str]] = {}  # model label -> its table and its history's
        self.history: dict[str, str] = {}  # history table -> the table it records
        _seals.append(self)

    def __repr__(self) -> str:
        return f"<Seal {self.name}>"

    @property
    def writers_text(self) -> str:
        return " or ".join(sorted(self.writers))

    def cover(
        self,
        sealed: Iterable[type[models.Model]],
        *,
        history: Mapping[type[models.Model], type[models.Model]] | None = None,
    ) -> None:
        """Seal these models' tables, and each one's history table (`history[model]`)."""
        history = history or {}
        for model in sealed:
            table = model._meta.db_table.lower()
            tables = {table}
            if model in history:
                history_table = history[model]._meta.db_table.lower()
                self.history[history_table] = table
                tables.add(history_table)
            self.tables[model._meta.label] = frozenset(tables)
            for name in tables:
                _by_table[name] = self
        for listener in listeners:
            listener()

    def writing(self, *sealed: type[models.Model]) -> _Opening:
        """A block in which these models' rows (and their history) may be written; for the
        seal's writer modules only, which must enter it themselves (`with seal.writing(M):`)."""
        tables: set[str] = set()
        for model in sealed:
            covered = self.tables.get(model._meta.label)
            if covered is None:
                raise ValueError(NOT_COVERED.format(model=model._meta.label, seal=self.name))
            tables |= covered
        return _Opening(self, frozenset(tables))

    def is_open(self, model: type[models.Model]) -> bool:
        """Whether a block open now may write `model`'s rows (documents' model-layer guard asks)."""
        block = _block.get()
        return block is not None and model._meta.db_table.lower() in block.tables

    def _refuse(self, template: str, **values: Any) -> Exception:
        return self.refusal(
            template.format(seal=self.name, writers=self.writers_text, hint=self.hint, **values)
        )


class _Opening:
    """The context manager `Seal.writing()` returns; checks who enters it."""

    def __init__(self, seal: Seal, tables: frozenset[str]) -> None:
        self.seal = seal
        self.tables = tables
        self._token: Any = None

    def __enter__(self) -> None:
        # The frame that runs the `with` statement: code of a writer module, or refused.
        caller = sys._getframe(1).f_globals.get("__name__", "?")
        if caller not in self.seal.writers:
            raise self.seal._refuse(WRITER_ONLY, caller=caller)
        outer = _block.get()
        if outer is None:
            block = _Block(self.tables)
        else:  # nested: the inner block adds its tables, and shares what has been written
            block = _Block(outer.tables | self.tables, outer.written)
        self._token = _block.set(block)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        _block.reset(self._token)


def openers() -> dict[str, frozenset[str]]:
    """Every dotted path in a seal's module that opens it (`documents.models.service_write`,
    `documents.models.SEAL.writing`) to the modules allowed to call it: for the write-path audit."""
    found: dict[str, frozenset[str]] = {}
    for seal in _seals:
        module = sys.modules.get(seal.module)
        for name, value in vars(module).items() if module else ():
            if value is seal:
                found[f"{seal.module}.{name}.writing"] = seal.writers
            elif getattr(value, "__self__", None) is seal and getattr(value, "__name__", "") == "writing":
                found[f"{seal.module}.{name}"] = seal.writers
    return found


def sealed_writes(targets: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The writes among `targets` (write_targets() of a statement) that the seal judges: rows of a
    sealed table, or of a table that cannot be named while any table is sealed. Schema changes
    (migrations) are not judged."""
    if not _by_table:
        return ()
    return tuple(
        (verb, table)
        for verb, table in targets
        if verb not in _SCHEMA_VERBS and (table in _by_table or table == UNKNOWN_TABLE)
    )


def check(writes: tuple[tuple[str, str], ...]) -> None:
    """Raise the seal's refusal unless every one of `writes` may run now; note what was written."""
    if _schema_editing.get():
        return
    block = _block.get()
    for verb, table in writes:
        if table == UNKNOWN_TABLE:
            seal = next(iter(_by_table.values()))
            raise seal._refuse(UNKNOWN_TARGET, verb=verb)
        seal = _by_table[table]
        if block is None:
            raise seal._refuse(OUTSIDE, verb=verb, table=table)
        if table not in block.tables:
            opened = ", ".join(f'"{name}"' for name in sorted(block.tables))
            raise seal._refuse(NOT_NAMED, verb=verb, table=table, opened=opened)
        recorded = seal.history.get(table)
        if recorded is None:
            block.written.add(table)
            continue
        if verb != "INSERT":
            raise seal._refuse(HISTORY_INSERT_ONLY, verb=verb, table=table)
        if recorded not in block.written:
            raise seal._refuse(HISTORY_ALONE, verb=verb, table=table, recorded=recorded)


# --- migrations: Django's schema editor may fill a new column of a sealed table ----------------
# Only the editor's own statements (a backfill, SQLite's table rebuild), not the code a migration
# runs inside it: RunPython's ORM calls go through the cursor and are judged; RunSQL goes through
# editor.execute() from RunSQL._run_sql and is judged too (and flagged by the write-path audit).

_editor_classes: dict[type[Any], type[Any]] = {}
_RUN_SQL = "_run_sql"


def _editing_class(base: type[Any]) -> type[Any]:
    if base not in _editor_classes:

        class SchemaEditor(base):  # type: ignore[misc, valid-type]
            def execute(self, sql: Any, params: Any = ()) -> Any:
                if sys._getframe(1).f_code.co_name == _RUN_SQL:  # a migration's RunSQL
                    return super().execute(sql, params)
                token = _schema_editing.set(True)
                try:
                    return super().execute(sql, params)
                finally:
                    _schema_editing.reset(token)

        SchemaEditor.__name__ = SchemaEditor.__qualname__ = f"Sealed{base.__name__}"
        _editor_classes[base] = SchemaEditor
    return _editor_classes[base]


def install(connection: BaseDatabaseWrapper) -> None:
    """Mark what this connection's schema editor runs as a migration's (idempotent)."""
    base = connection.SchemaEditorClass
    if base not in _editor_classes.values():
        connection.SchemaEditorClass = _editing_class(base)  # type: ignore[misc]
