"""What runs inside deploy_safe's processes before anything is deployed: its own start-up, frozen,
and the migrate subprocess's allowances and reports.

deploy_safe and its migrate subprocess talk through the environment and two report files: the
variables below are the whole protocol. deployguard's ready() calls prepare_process() in every
process, and it does nothing unless that process is one of deploy_safe's.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections
from django.db.migrations.migration import Migration

from deployguard import allowances, guard, state
from deployguard.deploy.writers import parse_writers
from deployguard.fingerprint import ADDED, CHANGED, REMOVED, diff_row_hashes, primary_key_column, row_hashes
from deployguard.tables import migrate_writable_tables, protected_tables

logger = logging.getLogger("deployguard")

FROZEN_REASON = (
    "deploy_safe runs with deploy mode on from start-up, so no app's ready() hook or other "
    "start-up code can write"
)
SCHEMA_CHANGES_VARIABLE = "DEPLOYGUARD_SCHEMA_CHANGES"
"""Set by deploy_safe in a `migrate` it runs: schema changes are allowed from start-up."""
REFUSALS_REPORT_VARIABLE = "DEPLOYGUARD_REFUSALS_REPORT"
"""The file where deploy_safe's migrate subprocess reports every write the guard refuses."""
DATA_MIGRATION_VARIABLE = "DEPLOYGUARD_ALLOW_DATA_MIGRATION"
"""The migrations (APP.NAME, comma-separated) deploy_safe --allow-data-migration lets write."""
DATA_MIGRATION_REPORT_VARIABLE = "DEPLOYGUARD_DATA_MIGRATION_REPORT"
"""The file where the migrate subprocess reports the rows each of those migrations changed."""
MIGRATE_GO = "go"
"""The line on deploy_safe_migrate's standard input that lets it migrate."""
MIGRATE_NOT_TOLD = 3
"""deploy_safe_migrate's exit status when its input closed without MIGRATE_GO."""

RowHashes = dict[str, list[tuple[Any, int]]]


def prepare_process(command: str) -> None:
    """deployguard's ready(), before any later app's: freeze deploy_safe's own start-up, and set
    up its migrate subprocesses. `command` is the management command this process runs."""
    if command == "deploy_safe":
        # deployguard is first in INSTALLED_APPS, so every later app's ready() runs frozen.
        state.force_for_process(FROZEN_REASON)
        install_start_up_excepthook()
    schema_reason = os.environ.get(SCHEMA_CHANGES_VARIABLE, "")
    if schema_reason:
        allowances.allow_schema_changes_for_process(schema_reason)
        install_data_migration_allowance()
    if os.environ.get(REFUSALS_REPORT_VARIABLE):
        # deploy_safe's migrate subprocess: from here on (later apps' ready() included), every
        # write the guard refuses is reported to deploy_safe, even one the code catches.
        install_refusal_report()


def install_start_up_excepthook() -> None:
    """Name the start-up hook that stopped deploy_safe, rather than leave a bare traceback."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if not apps.ready and not isinstance(error, KeyboardInterrupt):
            frames = traceback.extract_tb(tb)
            hooks = [f for f in frames if f.name == "ready"] or frames[-1:]
            where = f"{hooks[-1].filename}:{hooks[-1].lineno} in {hooks[-1].name}()" if hooks else "?"
            sys.stderr.write(
                f"deploy_safe stopped at start-up: {where} tried to write while the deploy is frozen "
                f"({kind.__name__}: {error}). Nothing was written and deploy mode was not turned on. "
                "Move that write out of start-up code.\n"
            )
        previous(kind, error, tb)

    sys.excepthook = hook


def protected_rows(*, using: str = "default") -> RowHashes:
    """Every row's hash, by primary key, of each protected table with a single-column primary
    key (bookkeeping tables aside), each list sorted by primary key."""
    connection = connections[using]
    tables = protected_tables(connection.introspection.table_names()) - migrate_writable_tables()
    return {
        table: sorted(row_hashes(table, using=using))
        for table in sorted(tables)
        if primary_key_column(table, using=using) is not None
    }


def changed_rows(before: RowHashes, after: RowHashes) -> dict[str, dict[str, list[Any]]]:
    """Per table, the primary keys of rows added, removed and changed; only tables that changed."""
    changes: dict[str, dict[str, list[Any]]] = {}
    for table in sorted(set(before) | set(after)):
        entry: dict[str, list[Any]] = {ADDED: [], REMOVED: [], CHANGED: []}
        for kind, pk in diff_row_hashes(before.get(table, []), after.get(table, [])):
            entry[kind].append(pk)
        if any(entry.values()):
            changes[table] = {kind: sorted(pks, key=str) for kind, pks in entry.items()}
    return changes


def install_data_migration_allowance() -> None:
    """In the migrate subprocess: full writes for the migrations named by deploy_safe
    --allow-data-migration, and nothing else; the rows each changed go to a report file."""
    allowed = {name for name in os.environ.get(DATA_MIGRATION_VARIABLE, "").split(",") if name}
    report = os.environ.get(DATA_MIGRATION_REPORT_VARIABLE, "")
    if not allowed:
        return
    original = Migration.apply

    def apply(self: Migration, project_state: Any, schema_editor: Any, collect_sql: bool = False) -> Any:
        key = f"{self.app_label}.{self.name}"
        if key not in allowed:
            return original(self, project_state, schema_editor, collect_sql)
        using = schema_editor.connection.alias
        before = protected_rows(using=using)
        with allowances.allow_writes(f"deploy_safe --allow-data-migration {key}"):
            result = original(self, project_state, schema_editor, collect_sql)
        changes = changed_rows(before, protected_rows(using=using))
        if report:
            with open(report, "a", encoding="utf-8") as out:
                out.write(json.dumps({"migration": key, "changes": changes}, default=str) + "\n")
        return result

    Migration.apply = apply  # type: ignore[method-assign]
    logger.warning("Data migrations allowed to write during this deploy: %s", ", ".join(sorted(allowed)))


def install_refusal_report() -> None:
    """In the migrate subprocess: append every write the guard refuses, caught by the code that
    tried it or not, with the project code that tried it, to deploy_safe's report file."""
    report = os.environ.get(REFUSALS_REPORT_VARIABLE, "")
    if not report:
        return
    base_dir = Path(settings.BASE_DIR).resolve()

    def record(refusal: Exception) -> None:
        stack = "".join(traceback.format_stack()) + f"{type(refusal).__name__}: {refusal}\n"
        for found in parse_writers(stack, base_dir):
            with open(report, "a", encoding="utf-8") as out:
                out.write(json.dumps(found) + "\n")

    guard.refusal_listeners.append(record)
