"""The integrity rules around a deploy: their counts before it, whether their answer still holds
after it, and the comparison with --baseline.

On a SQLite file the rules of each model (one pass over its table) run on threads and
connections of their own: SQLite runs SQL without the GIL, so two tables' passes use two
cores. On PostgreSQL the pre-check runs them in one exported snapshot, each model's rules on a
connection of its own, and fingerprints every protected table in that same snapshot beside
them: the tables the rules read are only known once they have run. When none of those tables
changed by the end of the deploy (rows, columns and column types), the same SQL would give the
same counts, and the post-check reuses them (would_see_changes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections, transaction

from deployguard import baseline, fingerprints, written
from deployguard.deploy.steps import Alongside
from deployguard.fingerprint import PIN_RUNNING, provable, snapshot_horizon
from deployguard.fingerprints import FingerprintsAt, TableFingerprint, Types
from deployguard.integrity import Rule, default_registry, evaluate

logger = logging.getLogger("deployguard")

BASELINE_DIFFERS = "The data differs from the baseline {path}{when}: run verify_integrity --baseline {path}."
REUSED = "the tables the rules read are unchanged since the pre-check ran them"


@dataclass(frozen=True)
class RulesBefore:
    """What the pre-check's rules found, and (PostgreSQL) what they read."""

    counts: dict[str, int] | None  # by rule id, in the registry's order; None: they could not run
    failure: DatabaseError | None = None  # why they could not (the new models on the old schema, say)
    inputs: dict[str, TableFingerprint] = field(default_factory=dict)  # the tables they read, fingerprinted
    tables: FingerprintsAt | None = None  # every protected table in their snapshot, for the backup to reuse
    # SQLite, while deploy_safe counts writes (deployguard.written): the counts before the rules
    # ran, and the tables their SQL named.
    mark: written.Mark | None = None
    read: frozenset[str] = frozenset()


def rules_by_model(rules: Iterable[Rule]) -> list[list[Rule]]:
    """The rules grouped by model, in first-seen order: each group is one pass over a table."""
    groups: dict[Any, list[Rule]] = {}
    for rule in rules:
        groups.setdefault(rule.model, []).append(rule)
    return list(groups.values())


@contextlib.contextmanager
def without_jit(*, using: str = "default", snapshot: bool = False) -> Iterator[None]:
    """PostgreSQL: the block's queries in one read transaction with JIT compilation off;
    with `snapshot`, in one REPEATABLE READ snapshot, so they all see the same data.

    The integrity rules are one query per table with a correlated subquery per rule; their
    estimated cost passes jit_above_cost at any size, and compiling them took 1.7 s of a
    2.5 s query at 20,000 rows. Their work is index lookups, which JIT does not speed up.
    Elsewhere (SQLite) the block runs as it is: a transaction there would take the write lock.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            if snapshot and outermost:  # must come before the transaction's first query
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor.execute("SET LOCAL jit = off")
        yield


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")


@contextlib.contextmanager
def tables_read(found: set[str], *, using: str = "default") -> Iterator[None]:
    """Collect into `found` every existing table the block's SQL names.

    A query can only read a table it names, so the tables among the identifiers of the SQL
    are a superset of what it read (a column that shares a table's name only adds one).
    Views are not followed: a view name is collected as itself.
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        names = connection.introspection.table_names(cursor, include_views=True)
    known = {name.lower(): name for name in names}

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        found.update(known[word] for word in set(_IDENTIFIER.findall(sql.lower())) if word in known)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield


def import_snapshot(cursor: Any, snapshot: str) -> None:
    """Make this (new, read-only) transaction see the exported PostgreSQL `snapshot`."""
    if not re.fullmatch(r"[0-9A-F-]+", snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


def count(*, using: str = "default", read: set[str] | None = None) -> dict[str, int]:
    """Every rule's count of failing rows, by rule id in the registry's order; `read` collects
    the tables their SQL named (tables_read)."""
    rules = default_registry.select()
    connection = connections[using]
    named: set[str] = set() if read is None else read
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        with without_jit(using=using), tables_read(named, using=using):
            return {r.rule.id: r.count for r in evaluate(rules, sample_size=0)}

    def counts(group: list[Rule]) -> tuple[dict[str, int], set[str]]:
        found: set[str] = set()
        try:
            with tables_read(found, using=using):
                return {r.rule.id: r.count for r in evaluate(group, sample_size=0)}, found
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="deploy_safe-rules") as pool:
        parts = [pool.submit(counts, group) for group in rules_by_model(rules)]
        found: dict[str, int] = {}
        for part in parts:
            part_counts, part_read = part.result()
            found |= part_counts
            named |= part_read
    return {rule.id: found[rule.id] for rule in rules}  # in the registry's order, as reported


def count_before(*, using: str = "default", alongside: Alongside) -> RulesBefore:
    """The pre-check's counts; on PostgreSQL also the tables the rules read, fingerprinted with
    their column types in the same snapshot, so that the post-check can tell whether the rules
    would see exactly the same data again. The fingerprints are taken on a second connection
    (`alongside`) that imports the rules' snapshot, while the rules run: every protected table
    is fingerprinted, and kept with the snapshot's horizon for the backup to reuse, even when a
    group of rules fails.

    Each model's rules (one pass over its table) run on a connection of their own in that
    snapshot too, without parallel workers: with the fingerprints beside them the cores are
    busy already, and a parallel worker would read the joined history tables whole again. At
    1,000,000 rows this took 5.9 s where one connection took 6.9 s."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        # While deploy_safe counts writes, the counts before the rules run: the post-check
        # reuses their answer when nothing they read was written since.
        counting = connection.vendor == "sqlite" and not connection.is_in_memory_db()
        mark = written.mark_now(str(connection.settings_dict["NAME"])) if counting else None
        read: set[str] = set()
        try:
            return RulesBefore(count(using=using, read=read), mark=mark, read=frozenset(read))
        except DatabaseError as error:
            return RulesBefore(None, failure=error)
    rules = default_registry.select()
    groups = rules_by_model(rules)
    imported = threading.Event()
    try:
        with without_jit(using=using, snapshot=True):
            with connections[using].cursor() as cursor:
                cursor.execute(f"SELECT pg_export_snapshot(), {PIN_RUNNING}")
                (snapshot, _running) = cursor.fetchone()
            horizon = snapshot_horizon(using=using)
            taken = alongside.start(
                lambda: fingerprints_in_snapshot(snapshot, horizon, imported, using=using)
            )
            workers = max(1, min(len(groups), os.cpu_count() or 2))
            # Leaving the pool waits for every group: the snapshot must outlive their import.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy_safe-rules") as pool:
                parts = [pool.submit(count_in_snapshot, snapshot, group, using=using) for group in groups]
            imported.wait()  # an exported snapshot can be imported only while its transaction lasts
    except DatabaseError as error:
        return RulesBefore(None, failure=error)
    counts: dict[str, int] = {}
    read: set[str] = set()
    failure: BaseException | None = None
    for part in parts:
        if (error := part.exception()) is not None:
            failure = failure or error  # the new rules on the old schema, say
            continue
        more_counts, more_read = part.result()
        counts |= more_counts
        read |= more_read
    tables: FingerprintsAt | None
    try:
        tables, _seconds = taken.result()
    except Exception as error:  # a lost shortcut, not a failed check: the backup hashes every table
        logger.warning(
            "deploy_safe: the pre-check's fingerprints failed (%s); the backup takes its own",
            error,
            exc_info=True,
        )
        tables = None
    if isinstance(failure, DatabaseError):
        return RulesBefore(None, failure=failure, tables=tables)
    if failure is not None:
        raise failure
    counts = {rule.id: counts[rule.id] for rule in rules}  # in the registry's order, as reported
    if tables is None:
        return RulesBefore(counts)
    inputs = {table: tables.tables[table] for table in sorted(read) if table in tables.tables}
    if set(inputs) != read:  # the rules read a table that is not protected: no proof
        return RulesBefore(counts, tables=tables)
    return RulesBefore(counts, inputs=inputs, tables=tables)


def count_in_snapshot(
    snapshot: str, rules: list[Rule], *, using: str = "default"
) -> tuple[dict[str, int], set[str]]:
    """PostgreSQL: `rules`' counts and the tables their SQL read, in the exported `snapshot`,
    without JIT or parallel workers (a thread's own connection)."""
    read: set[str] = set()
    try:
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            import_snapshot(cursor, snapshot)
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            with tables_read(read, using=using):
                counts = {r.rule.id: r.count for r in evaluate(rules, sample_size=0)}
        return counts, read
    finally:
        connections.close_all()  # this thread's own connections


def fingerprints_in_snapshot(
    snapshot: str, horizon: int, imported: threading.Event, *, using: str = "default"
) -> FingerprintsAt:
    """PostgreSQL: every protected table's fingerprint in an exported snapshot, whose horizon
    the exporting transaction took (a thread's own connection); `imported` is set once the
    snapshot is imported (or could not be)."""
    try:
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            import_snapshot(cursor, snapshot)
            imported.set()
            return FingerprintsAt(fingerprints.take(using=using), horizon)
    finally:
        imported.set()


def would_see_changes_sqlite(before: RulesBefore, now: written.Mark) -> str:
    """SQLite: why the rules must run again after migrate, or "" when their answer is known:
    every table they read is proved unwritten (deployguard.written) from before they ran until
    `now`, with the same definition, so the same rule SQL gives the same counts."""
    if before.counts is None:
        return "the pre-check's rules did not run"
    if before.mark is None or not before.mark.counts or not before.read:
        return "writes were not counted while the pre-check's rules ran"
    proved = now.unwritten_since(before.mark)
    for table in sorted(before.read):
        if table not in proved:
            return f"{table} was written (or redefined) since the pre-check ran the rules"
    return ""


def would_see_changes(
    before: RulesBefore,
    frozen: Mapping[str, TableFingerprint],
    unchanged: set[str],
    types: Mapping[str, Types],
) -> str:
    """Why the rules must run again after migrate, or "" when their answer is known.

    The same rule SQL (this process's) over the same rows and column types gives the same
    counts. The rows the pre-check's rules read equal the rows at the freeze when the
    fingerprints taken in the rules' snapshot equal those taken after deploy mode went on
    (`frozen`), and equal the rows after migrate when the post-check's comparison found them
    `unchanged`; `types` are the columns of the tables they read, now (fingerprints.types_now).
    """
    if before.counts is None:
        return "the pre-check's rules did not run"
    if not before.inputs:
        return "what the rules read was not fingerprinted with them (PostgreSQL only)"
    for table, then in before.inputs.items():
        at_freeze = frozen.get(table)
        if at_freeze is None or (at_freeze.columns, at_freeze.count, at_freeze.digest) != (
            then.columns,
            then.count,
            then.digest,
        ):
            return f"{table} changed between the pre-check and the freeze"
        if table not in unchanged:
            return f"{table} changed during the deploy"
        if types.get(table) != then.types:
            return f"{table}'s columns changed"
        if then.types is None or not provable(then.types):  # an enum's order, say, can change by DDL alone
            return f"{table} has columns whose meaning can change without a write"
    return ""


def errors(counts: Mapping[str, int]) -> dict[str, int]:
    """The error-level rules among `counts` that found rows."""
    return {
        rule_id: count
        for rule_id, count in counts.items()
        if count and default_registry.rules[rule_id].severity == "error"
    }


def worse(before: Mapping[str, int] | None, after: Mapping[str, int]) -> dict[str, int]:
    """The rules that found more rows after than before; without counts from before, the
    error-level rules that found any."""
    return {
        rule_id: count
        for rule_id, count in after.items()
        if count > (before.get(rule_id, 0) if before is not None else 0)
        and (before is not None or default_registry.rules[rule_id].severity == "error")
    }


def baseline_problem(path: str | Path, *, using: str = "default", after_migrate: bool = False) -> str:
    """Why the data fails --baseline, or "". DatabaseError when the models do not fit the
    schema (before migrate, when they are the new code's)."""
    try:
        comparison = baseline.compare(path, default_registry.models(), using=using)
    except baseline.BaselineError as error:
        return f"Baseline {path}: {error}"
    if not comparison.ok:
        return BASELINE_DIFFERS.format(path=path, when=" (compared after migrate)" if after_migrate else "")
    return ""
