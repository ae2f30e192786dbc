"""The deploy pipeline behind `manage.py deploy_safe`: check, freeze, back up, migrate, verify, restore.

Order: pre-checks → deploy mode on → fingerprints and applied migrations → verified backup →
`migrate` in a subprocess (schema changes only) → post-checks → deploy mode off → record.
Deploy mode goes on before the fingerprint and the backup, not after: otherwise a live
write between the fingerprint and the freeze would make the comparison race. Work that
cannot change what is compared overlaps: the migrate subprocess starts up (frozen, and
migrating only when told) while deploy_safe waits for other processes' caches (SQLite; on
PostgreSQL the database's own freeze makes the wait needless: deployguard.freeze); the
fingerprints are taken while the backup copies the same data, under the same lock or
snapshot; the write-path audit and the post-check's integrity rules run on a thread. On
PostgreSQL the post-check reuses the pre-check's integrity counts when it can prove the rules
would read exactly the same rows and column types (see Pipeline._rules_would_see_changes), and
each table is hashed once: the pre-check fingerprints every protected table in the rules'
snapshot, and a table proved unwritten since (fingerprint.unwritten_since: same row count, no
row version newer than that snapshot) keeps that fingerprint, in the backup and after migrate.
Going off does not wait for other processes' caches. Any failure
after the backup is undone: nothing to restore when the fingerprints and the applied
migrations prove the data unchanged, else the backup is restored and verified.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from io import StringIO
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from django.conf import settings
from django.core.mail import mail_admins
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from deployguard import backup, conf, freeze, guard, origin, state
from deployguard.exceptions import DrainTimeout
from deployguard.fingerprint import (
    PIN_RUNNING,
    _prepare,
    column_names,
    column_types,
    fingerprint_table,
    provable,
    row_hash_sql,
    snapshot_horizon,
    unwritten_since,
)
from deployguard.jobs import queue as job_queue
from deployguard.jobs import runner as job_runner

logger = logging.getLogger("deployguard")
T = TypeVar("T")

EXIT_DEPLOYED, EXIT_RESTORED, EXIT_MISUSE, EXIT_PRECHECK, EXIT_HUMAN = 0, 1, 2, 3, 4

FROZEN_REASON = (
    "deploy_safe runs with deploy mode on from start-up, so no app's ready() hook or other "
    "start-up code can write"
)
DATA_MIGRATION_VARIABLE = "DEPLOYGUARD_ALLOW_DATA_MIGRATION"
DATA_MIGRATION_REPORT_VARIABLE = "DEPLOYGUARD_DATA_MIGRATION_REPORT"
DEPLOY_ID_VARIABLE = "DEPLOYGUARD_DEPLOY_ID"
REFUSALS_REPORT_VARIABLE = guard.REFUSALS_REPORT_VARIABLE
MIGRATE_GO = "go"  # the line on deploy_safe_migrate's standard input that lets it migrate
MIGRATE_NOT_TOLD = 3  # deploy_safe_migrate's exit status when its input closed without it
ADVISORY_LOCK_KEY = 0x6465_706C_6F79  # "deploy"
GIT_CHANGES_NAMED = 10  # files named in the clean-tree pre-check's message

ANOTHER_DEPLOY = "Another deploy_safe is running ({who}); wait for it to finish. Nothing was touched."
INCOMPLETE_DEPLOY = (
    "Deploy {deploy_id} (started {started} by {who}) never finished: the process was killed. "
    "Run `manage.py deploy_safe --recover` first. Nothing was touched."
)
HUMAN_MUST_ACT = (
    "Deploy {deploy_id} failed ({why}) and the restore from {path} {how}: the database may differ from "
    "before the deploy. Deploy mode stays ON. Run `manage.py restore_db {path} --yes`, check with "
    "`manage.py verify_integrity`, then `manage.py deploy_mode off`."
)
BACKUP_UNUSABLE = (
    "Deploy {deploy_id} failed ({why}) and its backup {path} cannot be used ({error}); nothing was "
    "restored, so the database may differ from before the deploy. Deploy mode stays ON. Restore an "
    "earlier backup with `manage.py restore_db OTHER_BACKUP --yes` (backups are in {directory}), check "
    "with `manage.py verify_integrity`, then `manage.py deploy_mode off`."
)


def human_must_act(*, deploy_id: str, why: str, path: Any, error: Exception) -> str:
    """The exit-4 message: what failed and which command gets the operator out."""
    if isinstance(error, backup.RestoreRefused):  # refused before anything was restored
        return BACKUP_UNUSABLE.format(
            deploy_id=deploy_id, why=why, path=path, error=error, directory=Path(str(path)).parent
        )
    return HUMAN_MUST_ACT.format(
        deploy_id=deploy_id, why=why, path=path, how=f"failed or is unverified ({error})"
    )


class PipelineStop(Exception):
    """Ends the run with `exit_status`; `message` is the one line the operator reads."""

    def __init__(self, exit_status: int, message: str) -> None:
        self.exit_status = exit_status
        self.message = message
        super().__init__(message)


# --- what runs inside deploy_safe's own process and its migrate subprocess ----------------


def install_start_up_excepthook() -> None:
    """Name the start-up hook that stopped deploy_safe, rather than leave a bare traceback."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        from django.apps import apps

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


def _die_with_parent() -> None:
    """preexec_fn: the migrate subprocess gets SIGKILL when deploy_safe dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def table_rows(table: str, *, using: str = "default") -> dict[Any, int] | None:
    """{pk: row hash} of a table, or None when it has no single-column primary key."""
    connection = connections[using]
    _prepare(connection)
    with connection.cursor() as cursor:
        pk = connection.introspection.get_primary_key_column(cursor, table)
        if pk is None:
            return None
        columns = column_names([table], using=using)[table]
        quote = connection.ops.quote_name
        cursor.execute(
            f"SELECT {quote(pk)}, {row_hash_sql(columns, connection)} FROM {quote(table)}"  # noqa: S608
        )
        return dict(cursor.fetchall())


def snapshot_rows(*, using: str = "default") -> dict[str, dict[Any, int] | None]:
    connection = connections[using]
    tables = guard.protected_tables(connection.introspection.table_names())
    return {table: table_rows(table, using=using) for table in sorted(tables - bookkeeping_tables())}


def diff_rows(
    before: dict[str, dict[Any, int] | None], after: dict[str, dict[Any, int] | None]
) -> dict[str, dict[str, list[Any]]]:
    """Per table, the primary keys of rows added, removed and changed; only tables that changed."""
    changes: dict[str, dict[str, list[Any]]] = {}
    for table in sorted(set(before) | set(after)):
        then, now = before.get(table) or {}, after.get(table) or {}
        entry = {
            "added": sorted(set(now) - set(then), key=str),
            "removed": sorted(set(then) - set(now), key=str),
            "changed": sorted((pk for pk in set(then) & set(now) if then[pk] != now[pk]), key=str),
        }
        if any(entry.values()):
            changes[table] = entry
    return changes


def install_data_migration_allowance() -> None:
    """In the migrate subprocess: full writes for the migrations named by deploy_safe
    --allow-data-migration, and nothing else; the rows each changed go to a report file."""
    allowed = {name for name in os.environ.get(DATA_MIGRATION_VARIABLE, "").split(",") if name}
    report = os.environ.get(DATA_MIGRATION_REPORT_VARIABLE, "")
    if not allowed:
        return
    from django.db.migrations.migration import Migration

    original = Migration.apply

    def apply(self: Migration, project_state: Any, schema_editor: Any, collect_sql: bool = False) -> Any:
        key = f"{self.app_label}.{self.name}"
        if key not in allowed:
            return original(self, project_state, schema_editor, collect_sql)
        using = schema_editor.connection.alias
        before = snapshot_rows(using=using)
        with guard.allow_writes(f"deploy_safe --allow-data-migration {key}"):
            result = original(self, project_state, schema_editor, collect_sql)
        changes = diff_rows(before, snapshot_rows(using=using))
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


# --- pieces the pipeline uses -------------------------------------------------------------


def bookkeeping_tables() -> frozenset[str]:
    return guard.migrate_writable_tables()


@dataclass
class TablesAt:
    """PostgreSQL: every protected table's fingerprint in one snapshot, and its horizon
    (fingerprint.snapshot_horizon), against which later states are proved unwritten."""

    horizon: int
    fingerprints: dict[str, dict[str, Any]]


def table_fingerprints(
    *, using: str = "default", earlier: TablesAt | None = None
) -> dict[str, dict[str, Any]]:
    """Every protected table's columns, row count and digest (bookkeeping tables included);
    on PostgreSQL also its column types.

    With `earlier` (PostgreSQL), a table with the same columns (fingerprint.column_types: names,
    types, numbers, the table's oid), all provable, that is proved unwritten since that
    snapshot (fingerprint.unwritten_since) keeps its earlier fingerprint, the very same dict,
    instead of being hashed again.
    """
    connection = connections[using]
    result: dict[str, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        tables = sorted(guard.protected_tables(connection.introspection.table_names(cursor)))
    if connection.vendor != "postgresql":
        described = {
            table: {"columns": columns} for table, columns in column_names(tables, using=using).items()
        }
    else:
        described = {
            table: {"columns": [column[0] for column in types], "types": types}
            for table, types in column_types(tables, using=using).items()
        }
    proved: set[str] = set()
    if earlier is not None:
        same_types = {
            table: then["count"]
            for table in tables
            if (then := earlier.fingerprints.get(table))
            and then.get("types") == described[table].get("types")
            and provable(then["types"])
        }
        proved = unwritten_since(earlier.horizon, same_types, using=using)
    for table in tables:
        if earlier is not None and table in proved:
            result[table] = earlier.fingerprints[table]
            continue
        fp = fingerprint_table(table, using=using, columns=described[table]["columns"])
        result[table] = {**described[table], "count": fp.count, "digest": fp.digest}
    return result


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


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")


def rules_by_model(rules: Iterable[Any]) -> list[list[Any]]:
    """The rules grouped by model, in first-seen order: each group is one pass over a table."""
    groups: dict[Any, list[Any]] = {}
    for rule in rules:
        groups.setdefault(rule.model, []).append(rule)
    return list(groups.values())


def _import_snapshot(cursor: Any, snapshot: str) -> None:
    """Make this (new, read-only) transaction see the exported PostgreSQL `snapshot`."""
    if not re.fullmatch(r"[0-9A-F-]+", snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


def pending_migrations(*, using: str = "default", app: str | None = None) -> list[str]:
    connection = connections[using]
    executor = MigrationExecutor(connection)
    targets = [node for node in executor.loader.graph.leaf_nodes() if app is None or node[0] == app]
    return [f"{m.app_label}.{m.name}" for m, backwards in executor.migration_plan(targets) if not backwards]


def table_exists(table: str, *, using: str = "default") -> bool:
    connection = connections[using]
    with connection.cursor() as cursor:
        return table in connection.introspection.table_names(cursor)


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
_EXCEPTION = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Active|Refused)): (?P<message>.*)$")


def parse_writers(stderr: str, base_dir: Path) -> list[dict[str, str]]:
    """The exceptions in a traceback-bearing stderr, each with the project frame that raised it."""
    found: list[dict[str, str]] = []
    frames: list[tuple[str, str, str]] = []
    framework = ("site-packages", f"{os.sep}deployguard{os.sep}", f"{os.sep}lib{os.sep}python")
    for line in stderr.splitlines():
        if match := _FRAME.match(line):
            frames.append((match["file"], match["line"], match["func"]))
            continue
        if match := _EXCEPTION.match(line.strip()):
            ours = [
                f
                for f in frames
                if not any(part in f[0] for part in framework) and not f[0].endswith("manage.py")
            ]
            places = []
            for file, number, func in ours:
                with contextlib.suppress(ValueError):
                    file = str(Path(file).resolve().relative_to(base_dir))
                places.append(f"{file}:{number} in {func}()")
            where = " -> ".join(places)
            found.append(
                {"exception": match["name"].rsplit(".", 1)[-1], "message": match["message"], "where": where}
            )
            frames = []
    return found


def _read_refusals(path: str) -> list[dict[str, str]]:
    """The refusals the migrate subprocess recorded (install_refusal_report); the file is removed."""
    try:
        with open(path, encoding="utf-8") as report:
            return [json.loads(line) for line in report if line.strip()]
    except (OSError, ValueError):
        return []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


class DeployLock:
    """One deploy at a time: a PostgreSQL session advisory lock, or flock on a file beside SQLite.

    The holder is published with the lock (the lock session's application_name; the lock
    file's content), so a deploy that finds it taken names the one that holds it even before
    that one has written its DeployRecord.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._handle: Any = None

    def acquire(self, deploy_id: str = "", actor: str = "") -> bool:
        connection = connections[self.using]
        if connection.vendor == "postgresql":
            # Its own session: restoring closes Django's connection, which would drop the lock.
            raw = connection.get_new_connection(connection.get_connection_params())
            raw.autocommit = True
            with raw.cursor() as cursor:
                # Named before the lock is tried, so there is no moment it is held anonymously.
                cursor.execute(
                    "SELECT set_config('application_name', %s, false)",
                    [f"deploy_safe {deploy_id} {actor}"[:63]],
                )
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
                (taken,) = cursor.fetchone()
            if not taken:
                raw.close()
                return False
            self._handle = raw
            return True
        handle: IO[str] = open(self._lock_path(), "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"deploy {deploy_id}, started {timezone.now():%Y-%m-%d %H:%M:%S} by {actor}")
        handle.flush()
        self._handle = handle
        return True

    def _lock_path(self) -> Path:
        path = Path(str(connections[self.using].settings_dict["NAME"]))
        return path.with_name(path.name + ".deploy.lock")

    def holder(self) -> str:
        """Who holds the lock, as "deploy ID, started WHEN by WHO", or "" when that is unknown."""
        connection = connections[self.using]
        with contextlib.suppress(DatabaseError, OSError, ValueError):
            if connection.vendor != "postgresql":
                return self._lock_path().read_text().strip()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT a.application_name, a.backend_start FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid::bigint = %s AND l.objid::bigint = %s",
                    [ADVISORY_LOCK_KEY >> 32, ADVISORY_LOCK_KEY & 0xFFFF_FFFF],
                )
                row = cursor.fetchone()
            if row and row[0].startswith("deploy_safe "):
                _, deploy_id, actor = [*row[0].split(" ", 2), ""][:3]
                started = row[1].astimezone(datetime.UTC)  # as DeployRecord.started_at is shown
                return f"deploy {deploy_id}, started {started:%Y-%m-%d %H:%M:%S} by {actor or '?'}"
        return ""

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(Exception):
                if not hasattr(self._handle, "cursor"):  # the lock file: it names nobody once released
                    self._handle.truncate(0)
                self._handle.close()
            self._handle = None


# --- the pipeline -----------------------------------------------------------------------


@dataclass
class Options:
    check_level: str = "ERROR"
    baseline: str | None = None
    allow_dirty: bool = False
    backup_dir: Path | None = None
    allow_data_migrations: list[str] = field(default_factory=list)
    expected_minutes: float = 15.0
    verbosity: int = 1
    using: str = "default"


@dataclass
class Step:
    name: str
    status: str = "ok"
    seconds: float = 0.0
    detail: Any = None


Output = Callable[[str, str], None]  # (style name, text)


class Pipeline:
    """One run of deploy_safe (or of deploy_safe --recover)."""

    def __init__(self, options: Options, output: Output) -> None:
        self.options = options
        self.out = output
        self.using = options.using
        self.deploy_id = f"{timezone.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.started_at = timezone.now()
        self.steps: list[Step] = []
        self.lock = DeployLock(self.using)
        self.record: Any = None
        self.fingerprints: dict[str, dict[str, Any]] = {}
        self.migrations: dict[str, list[str]] = {}
        self.backup_path: Path | None = None
        self.manifest: backup.Manifest | None = None
        self.integrity_before: dict[str, int] | None = None
        # PostgreSQL: what the pre-check's rules read, fingerprinted in the rules' snapshot...
        self.rule_inputs: dict[str, dict[str, Any]] = {}
        # ...where every protected table was fingerprinted (reused by the backup when unwritten
        # since), and the snapshot the backup was taken in (the post-check's reference).
        self.pre_check_tables: TablesAt | None = None
        self.frozen_horizon: int | None = None
        self._unchanged_tables: set[str] = set()
        self.proved_unwritten: list[str] = []  # the post-check's tables proved without hashing
        self.baseline_after_migrate = False
        self.writers: list[dict[str, str]] = []
        self.data_changes: dict[str, Any] = {}
        self.schema_changes: list[str] = []
        self.exit_status = EXIT_DEPLOYED
        self.status = "running"
        self.message = ""
        self._migrate_process: subprocess.Popen[str] | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="deploy_safe")
        self._audit: Future[tuple[Any, float]] | None = None
        self._data_report = ""
        self._refusals_report = ""
        self._job_writers: list[dict[str, str]] = []

    # --- reporting ---

    @contextlib.contextmanager
    def step(self, name: str, *, before: Step | None = None) -> Iterator[Step]:
        """Time a step; `before`: a step still running that this one runs within, listed after it."""
        step = Step(name)
        started = time.perf_counter()
        where = next((i for i, s in enumerate(self.steps) if s is before), len(self.steps))
        self.steps.insert(where, step)
        try:
            yield step
        except BaseException:
            step.status = "failed"
            raise
        finally:
            step.seconds = round(time.perf_counter() - started, 3)
            if self.options.verbosity >= 1:
                style = (
                    "SUCCESS" if step.status == "ok" else "WARNING" if step.status == "skipped" else "ERROR"
                )
                self.out(style, f"{step.name}: {step.status} ({step.seconds:.2f}s)")
            if self.options.verbosity >= 2 and step.detail:
                self.out("", f"  {json.dumps(step.detail, default=str)}")

    def report(self) -> dict[str, Any]:
        return {
            "deploy_id": self.deploy_id,
            "status": self.status,
            "exit_status": self.exit_status,
            "message": self.message,
            "started_at": self.started_at.isoformat(),
            "finished_at": timezone.now().isoformat(),
            "database": str(connections[self.using].settings_dict["NAME"]),
            "engine": connections[self.using].vendor,
            "backup": str(self.backup_path) if self.backup_path else None,
            "steps": [asdict(step) for step in self.steps],
            "blocked_writes": self.writers + self.job_writers(),
            "data_migration_changes": self.data_changes,
            "schema_changes": self.schema_changes,
        }

    def job_writers(self) -> list[dict[str, str]]:
        """Jobs that met the freeze since the deploy began (deployguard.jobs), kept in memory so
        that a restore, which takes their records away, leaves them in the report."""
        with contextlib.suppress(DatabaseError):
            found = job_runner.refused_writes(since=self.started_at, using=self.using)
            if len(found) >= len(self._job_writers):
                self._job_writers = found
        return self._job_writers

    def _save_record(self, **fields: Any) -> None:
        from deployguard.models import DeployRecord

        if self.record is None:
            if not table_exists(DeployRecord._meta.db_table, using=self.using):
                return
            self.record = DeployRecord(
                deploy_id=self.deploy_id, started_by=state.os_actor(), started_at=self.started_at
            )
        for name, value in fields.items():
            setattr(self.record, name, value)
        self.record.backup_path = str(self.backup_path or "")
        self.record.report = json.loads(json.dumps(self.report(), default=str))
        self.record._change_reason = f"deploy_safe: {self.record.status}"
        self.record.save(using=self.using)

    def append_log(self) -> None:
        path = Path(
            getattr(settings, "DEPLOYGUARD_DEPLOY_LOG", Path(settings.BASE_DIR) / "var" / "deploys.log")
        )
        line = {
            key: value
            for key, value in self.report().items()
            if key not in ("steps", "blocked_writes", "data_migration_changes")
        }
        line["seconds"] = round(sum(step.seconds for step in self.steps), 3)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(line, default=str) + "\n")
        except OSError as error:
            self.out("ERROR", f"Could not append to the deploy log {path}: {error.strerror or error}")

    # --- the run ---

    def run(self) -> int:
        with origin.deploy(self.deploy_id), origin.origin(f"deploy_safe {self.deploy_id}"):
            try:
                self._run()
            except PipelineStop as stop:
                self.exit_status, self.message = stop.exit_status, stop.message
            finally:
                self.discard_migrate()
                self._pool.shutdown(wait=True)
                self.lock.release()
        return self.exit_status

    def _run(self) -> None:
        self.pre_checks()
        self.bootstrap()
        with self.step("deploy mode on") as step:
            # state.switch_on(), with the migrate subprocess started between the switch and the wait.
            status = state.enable(
                reason=f"deploy_safe {self.deploy_id}",
                changed_by=state.os_actor(),
                deploy_id=self.deploy_id,
                expected_minutes=self.options.expected_minutes,
            )
            self.start_migrate()
            # PostgreSQL: the drain enables the database's own freeze, after which no client can
            # write whatever it has cached, so other processes' caches need no waiting for.
            waited = 0.0 if freeze.supported(connections[self.using]) else state.wait_for_propagation()
            try:
                drained = state.drain_in_flight_writes()
            except DrainTimeout as error:
                step.status, step.detail = "failed", str(error)
                self._unfreeze(f"deploy_safe {self.deploy_id} aborted")
                self.status = "rolled_back"
                self._finish(
                    EXIT_PRECHECK, f"{error} Deploy mode is off again; nothing was backed up or migrated."
                )
                raise PipelineStop(EXIT_PRECHECK, self.message) from None
            step.detail = {"expected_end": status.expected_end, "waited": waited, "drain": drained}
            self._save_record(status="running")
        try:
            with self.step("backup") as step:
                directory = self.options.backup_dir or backup.default_backup_dir()
                self.backup_path, self.manifest = backup.backup_database(
                    backup.default_backup_path(self.using, directory),
                    using=self.using,
                    fingerprint=lambda: self._fingerprint(before=step),
                )
                step.detail = {"path": str(self.backup_path), "size": self.manifest.size}
                self._save_record(status="running")
        except (backup.BackupError, DatabaseError, OSError) as error:
            # Nothing was migrated: the data is as it was. Unfreeze and stop.
            self._unfreeze(f"deploy_safe {self.deploy_id} aborted")
            self.status = "rolled_back"
            self._finish(EXIT_RESTORED, f"The backup failed ({error}); nothing was migrated.")
            raise PipelineStop(EXIT_RESTORED, self.message) from None
        failure = self.migrate()
        if failure is None:
            failure = self.post_checks()
        if failure is not None:
            self.roll_back(failure)
            return
        with self.step("deploy mode off") as step:
            step.detail = self._unfreeze(f"deploy_safe {self.deploy_id} done")
        self.status = "succeeded"
        self._finish(EXIT_DEPLOYED, f"Deploy {self.deploy_id} done: migrated and verified.")

    def _fingerprint(self, *, before: Step) -> backup.Fingerprints:
        """The fingerprints and applied migrations the post-check compares against; taken
        while the backup copies the same data (same lock or snapshot), reported as a step of
        its own, listed before the backup's."""
        with self.step("fingerprint", before=before) as step:
            postgresql = connections[self.using].vendor == "postgresql"
            earlier = self.pre_check_tables
            self.fingerprints = table_fingerprints(using=self.using, earlier=earlier)
            self.migrations = backup.applied_migrations(self.using)
            if postgresql:  # the post-check proves tables unwritten since this snapshot
                self.frozen_horizon = snapshot_horizon(using=self.using)
            step.detail = {
                "tables": len(self.fingerprints),
                "rows": sum(fp["count"] for fp in self.fingerprints.values()),
                "while": "the backup copies the same data",
            }
            if earlier is not None:
                reused = [t for t, fp in self.fingerprints.items() if fp is earlier.fingerprints.get(t)]
                step.detail["reused_from_pre_check"] = len(reused)
                step.detail["hashed"] = sorted(set(self.fingerprints) - set(reused))
        return {t: {"count": fp["count"], "digest": fp["digest"]} for t, fp in self.fingerprints.items()}

    def _alongside(self, work: Callable[[], T]) -> Future[tuple[T, float]]:
        """Start `work` on a thread of its own, to overlap with what the main thread does next;
        the future holds its result and the seconds it took. Its database connections are its
        own and are closed when it ends. Inline when the database is SQLite in memory, which
        another connection would not see."""

        def timed() -> tuple[T, float]:
            started = time.perf_counter()
            try:
                return work(), round(time.perf_counter() - started, 3)
            finally:
                if threading.current_thread() is not threading.main_thread():
                    connections.close_all()

        connection = connections[self.using]
        if connection.vendor == "sqlite" and connection.is_in_memory_db():
            future: Future[tuple[T, float]] = Future()
            try:
                future.set_result(timed())
            except Exception as error:
                future.set_exception(error)
            return future
        return self._pool.submit(timed)

    def _unfreeze(self, reason: str) -> dict[str, Any]:
        """Deploy mode off, without waiting for other processes' cached state to expire.

        Going on must wait: the fingerprints are only true once nobody can write. Going off
        need not: nothing deploy_safe does afterwards depends on other processes writing
        again, and each of them sees "off" within DEPLOYGUARD_STATE_CACHE_SECONDS anyway.
        """
        state.disable(changed_by=state.os_actor(), reason=reason)
        return {"waited_for_other_processes": False, "they_write_again_within": conf.propagation_delay()}

    def _finish(self, exit_status: int, message: str) -> None:
        self.exit_status, self.message = exit_status, message
        with contextlib.suppress(DatabaseError):
            self._save_record(status=self.status, finished_at=timezone.now(), exit_status=exit_status,
                              message=message)  # fmt: skip
        self.append_log()

    # --- pre-checks ---

    def pre_checks(self) -> None:
        with self.step("pre-check: one deploy at a time") as step:
            if not self.lock.acquire(self.deploy_id, state.os_actor()):
                step.status = "failed"
                raise PipelineStop(EXIT_PRECHECK, ANOTHER_DEPLOY.format(who=self._running_deploy()))
        # The write-path audit is pure Python and reads only files: it runs while the checks
        # before it wait on the database (the integrity rules above all).
        self._audit = self._alongside(self._write_path_audit)
        failures: list[str] = []
        for name, check in (
            ("no incomplete deploy", self._check_incomplete),
            ("deploy mode off", self._check_deploy_mode_off),
            ("backup directory writable", self._check_backup_dir),
            ("clean git working tree", self._check_git),
            ("check --deploy", self._check_system),
            ("makemigrations --check", self._check_makemigrations),
            ("data migrations named", self._check_allowed_migrations),
            ("integrity", self._check_integrity),
            ("write-path audit", self._check_audit),
        ):
            with self.step(f"pre-check: {name}") as step:
                problem = check(step)
                if problem:
                    step.status = "failed"
                    step.detail = problem
                    failures.append(problem)
                    if self.options.verbosity >= 1:
                        self.out("ERROR", f"  {problem}")
        if failures:
            self.status = "precheck_failed"
            self.exit_status = EXIT_PRECHECK
            self.message = f"{len(failures)} pre-check(s) failed; nothing was touched: " + " | ".join(
                failures
            )
            self.append_log()
            raise PipelineStop(EXIT_PRECHECK, self.message)

    def _running_deploy(self) -> str:
        from deployguard.models import DeployRecord

        with contextlib.suppress(DatabaseError):
            if table_exists(DeployRecord._meta.db_table, using=self.using):
                running = DeployRecord.objects.using(self.using).filter(status="running").first()
                if running:
                    return f"deploy {running.deploy_id}, started {running.started_at:%Y-%m-%d %H:%M:%S} by {running.started_by}"  # noqa: E501
        # Still in its pre-checks (no record yet): the lock names it.
        return self.lock.holder() or "it holds the deploy lock"

    def _check_incomplete(self, step: Step) -> str:
        from deployguard.models import DeployRecord

        if not table_exists(DeployRecord._meta.db_table, using=self.using):
            step.status = "skipped"
            return ""
        running = DeployRecord.objects.using(self.using).filter(status="running").first()
        if running:
            return INCOMPLETE_DEPLOY.format(
                deploy_id=running.deploy_id, started=running.started_at.isoformat(timespec="seconds"),
                who=running.started_by,
            )  # fmt: skip
        return ""

    def _check_deploy_mode_off(self, step: Step) -> str:
        from deployguard.models import STATE_ROW_ID, DeployModeState

        if not table_exists(DeployModeState._meta.db_table, using=self.using):
            return ""
        row = DeployModeState.objects.using(self.using).filter(pk=STATE_ROW_ID).first()
        if row and row.enabled:
            return f"Deploy mode is already on ({state._status_from_row(row).describe()}); turn it off first."
        return ""

    def _check_backup_dir(self, step: Step) -> str:
        directory = self.options.backup_dir or backup.default_backup_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".deploy_safe-probe-"):
                pass
        except OSError as error:
            return f"The backup directory {directory} is not writable ({error.strerror or error}); pass --backup-dir."  # noqa: E501
        step.detail = str(directory)
        return ""

    def _check_git(self, step: Step) -> str:
        if self.options.allow_dirty:
            step.status = "skipped"
            return ""
        git = shutil.which("git")
        if git is None:
            step.status = "skipped"
            return ""
        base = str(settings.BASE_DIR)
        inside = subprocess.run(  # noqa: S603
            [git, "-C", base, "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            check=False,
        )
        if inside.returncode != 0:
            step.status = "skipped"
            return ""
        status = subprocess.run(  # noqa: S603
            [git, "-C", base, "status", "--porcelain"], capture_output=True, text=True, check=False
        )
        if status.stdout.strip():
            changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
            named = ", ".join(changed[:GIT_CHANGES_NAMED])
            more = ", …" if len(changed) > GIT_CHANGES_NAMED else ""
            return f"The git working tree has {len(changed)} uncommitted change(s) ({named}{more}): commit them or pass --allow-dirty."  # noqa: E501
        return ""

    def _check_system(self, step: Step) -> str:
        buffer = StringIO()
        try:
            call_command(
                "check", deploy=True, fail_level=self.options.check_level, stdout=buffer, stderr=buffer
            )
        except CommandError as error:
            return f"`check --deploy` found issues at {self.options.check_level} or above: {str(error).strip().splitlines()[-1]}"  # noqa: E501
        return ""

    def _check_makemigrations(self, step: Step) -> str:
        buffer = StringIO()
        try:
            call_command("makemigrations", check=True, dry_run=True, stdout=buffer, stderr=buffer)
        except SystemExit as exit_:
            if exit_.code:
                return f"Models have changes without migrations: run makemigrations and commit ({buffer.getvalue().strip()[:200]})."  # noqa: E501
        return ""

    def _check_allowed_migrations(self, step: Step) -> str:
        if not self.options.allow_data_migrations:
            step.status = "skipped"
            return ""
        pending = set(pending_migrations(using=self.using))
        unknown = [name for name in self.options.allow_data_migrations if name not in pending]
        if unknown:
            return f"--allow-data-migration names no pending migration: {', '.join(unknown)}."
        return ""

    def _integrity_counts(self) -> dict[str, int]:
        """Every rule's count of failing rows. On a SQLite file the rules of each model (one
        pass over its table) run on threads and connections of their own: SQLite runs SQL
        without the GIL, so two tables' passes use two cores."""
        from deployguard.integrity import default_registry, evaluate

        rules = default_registry.select()
        connection = connections[self.using]
        if connection.vendor != "sqlite" or connection.is_in_memory_db():
            with without_jit(using=self.using):
                return {r.rule.id: r.count for r in evaluate(rules, sample_size=0)}

        def counts(group: list[Any]) -> dict[str, int]:
            try:
                return {r.rule.id: r.count for r in evaluate(group, sample_size=0)}
            finally:
                connections.close_all()  # this thread's own connections

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="deploy_safe-rules") as pool:
            parts = [pool.submit(counts, group) for group in rules_by_model(rules)]
            found = {rule_id: count for part in parts for rule_id, count in part.result().items()}
        return {rule.id: found[rule.id] for rule in rules}  # in the registry's order, as reported

    def _integrity_counts_and_inputs(self) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
        """The rules' counts; on PostgreSQL also the tables they read, fingerprinted with their
        column types in the same snapshot, so that the post-check can tell whether the rules
        would see exactly the same data again. The fingerprints are taken on a second
        connection that imports the rules' snapshot, while the rules run: the tables the rules
        read are only known once they have run, so every protected table is fingerprinted;
        kept in `pre_check_tables`, with the snapshot's horizon, for the backup to reuse.

        Each model's rules (one pass over its table) run on a connection of their own in
        that snapshot too, without parallel workers: with the fingerprints beside them the
        cores are busy already, and a parallel worker would read the joined history tables
        whole again. At 1,000,000 rows this took 5.9 s where one connection took 6.9 s."""
        from deployguard.integrity import default_registry

        if connections[self.using].vendor != "postgresql":
            return self._integrity_counts(), {}
        rules = default_registry.select()
        groups = rules_by_model(rules)
        imported = threading.Event()
        with without_jit(using=self.using, snapshot=True):
            with connections[self.using].cursor() as cursor:
                cursor.execute(f"SELECT pg_export_snapshot(), {PIN_RUNNING}")
                (snapshot, _running) = cursor.fetchone()
            horizon = snapshot_horizon(using=self.using)
            fingerprints = self._alongside(lambda: self._fingerprints_in(snapshot, horizon, imported))
            workers = max(1, min(len(groups), os.cpu_count() or 2))
            # Leaving the pool waits for every group: the snapshot must outlive their import.
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy_safe-rules") as pool:
                parts = [pool.submit(self._rules_in, snapshot, group) for group in groups]
            imported.wait()  # an exported snapshot can be imported only while its transaction lasts
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
        try:
            self.pre_check_tables, _seconds = fingerprints.result()
        except Exception as error:  # a lost shortcut, not a failed check: the backup hashes every table
            logger.warning(
                "deploy_safe: the pre-check's fingerprints failed (%s); the backup takes its own",
                error,
                exc_info=True,
            )
            self.pre_check_tables = None
        if failure is not None:
            raise failure
        counts = {rule.id: counts[rule.id] for rule in rules}  # in the registry's order, as reported
        if self.pre_check_tables is None:
            return counts, {}
        taken = self.pre_check_tables.fingerprints
        inputs = {table: taken[table] for table in sorted(read) if table in taken}
        if set(inputs) != read:  # the rules read a table that is not protected: no proof
            return counts, {}
        return counts, inputs

    def _rules_in(self, snapshot: str, rules: list[Any]) -> tuple[dict[str, int], set[str]]:
        """PostgreSQL: `rules`' counts and the tables their SQL read, in the exported
        `snapshot`, without JIT or parallel workers (a thread's own connection)."""
        from deployguard.integrity import evaluate

        read: set[str] = set()
        try:
            with transaction.atomic(using=self.using), connections[self.using].cursor() as cursor:
                _import_snapshot(cursor, snapshot)
                cursor.execute("SET LOCAL jit = off")
                cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                with tables_read(read, using=self.using):
                    counts = {r.rule.id: r.count for r in evaluate(rules, sample_size=0)}
            return counts, read
        finally:
            connections.close_all()  # this thread's own connections

    def _fingerprints_in(self, snapshot: str, horizon: int, imported: threading.Event) -> TablesAt:
        """Every protected table's fingerprint in an exported snapshot, whose horizon the
        exporting transaction took (a thread's own connection)."""
        try:
            with transaction.atomic(using=self.using), connections[self.using].cursor() as cursor:
                _import_snapshot(cursor, snapshot)
                imported.set()
                return TablesAt(horizon, table_fingerprints(using=self.using))
        finally:
            imported.set()

    def _rules_would_see_changes(self) -> str:
        """Why the rules must run again after migrate, or "" when their answer is known.

        The same rule SQL (this process's) over the same rows and column types gives the same
        counts. The rows the pre-check's rules read equal the rows at the freeze when the
        fingerprints taken in the rules' snapshot equal those taken after deploy mode went on,
        and equal the rows after migrate when the post-check's comparison found them unchanged.
        """
        if self.integrity_before is None:
            return "the pre-check's rules did not run"
        if not self.rule_inputs:
            return "what the rules read was not fingerprinted with them (PostgreSQL only)"
        changed_types = column_types(self.rule_inputs, using=self.using)
        for table, before in self.rule_inputs.items():
            frozen = self.fingerprints.get(table)
            if frozen is None or [frozen[k] for k in ("columns", "count", "digest")] != [
                before[k] for k in ("columns", "count", "digest")
            ]:
                return f"{table} changed between the pre-check and the freeze"
            if table not in self._unchanged_tables:
                return f"{table} changed during the deploy"
            if changed_types.get(table) != before["types"]:
                return f"{table}'s columns changed"
            if not provable(before["types"]):  # an enum's order, say, can change by DDL alone
                return f"{table} has columns whose meaning can change without a write"
        return ""

    def _check_integrity(self, step: Step) -> str:
        from deployguard.integrity import default_registry

        try:
            self.integrity_before, self.rule_inputs = self._integrity_counts_and_inputs()
        except DatabaseError as error:
            # The new code's models may not match the old schema until migrate has run: the
            # post-check runs the rules on the new schema, where any error counts as worse.
            step.detail = {"rules": f"could not run on the old schema: {error}"}
        else:
            step.detail = self.integrity_before
        if self.options.baseline:
            return self._compare_baseline(step)
        if self.integrity_before is None:
            step.status = "skipped"
            return ""
        errors = {
            rule_id: count
            for rule_id, count in self.integrity_before.items()
            if count and default_registry.rules[rule_id].severity == "error"
        }
        if errors:
            listed = ", ".join(f"{rule_id} ({count})" for rule_id, count in errors.items())
            return f"Integrity errors before the deploy: {listed}; see `manage.py verify_integrity`."
        return ""

    def _compare_baseline(self, step: Step | None = None) -> str:
        """Compare the data with --baseline: in the pre-check (`step` given), or after migrate
        when the old schema did not fit the new models; the fingerprints prove both compare the
        same rows. Returns the failure, or ""."""
        from deployguard import baseline
        from deployguard.integrity import default_registry

        path = self.options.baseline
        try:
            comparison = baseline.compare(path, default_registry.models(), using=self.using)
        except baseline.BaselineError as error:
            return f"Baseline {path}: {error}"
        except DatabaseError as error:
            if step is None:
                return f"Baseline {path} could not be compared after migrate either: {error}"
            self.baseline_after_migrate = True
            if not isinstance(step.detail, dict) or "rules" not in step.detail:
                step.detail = {"rules": step.detail}
            step.detail["baseline"] = (
                f"compared after migrate: the old schema does not fit the models ({error})"
            )
            return ""
        if step is not None and isinstance(step.detail, dict) and "rules" in step.detail:
            step.detail["baseline"] = "equal"
        if not comparison.ok:
            when = " (compared after migrate)" if step is None else ""
            return f"The data differs from the baseline {path}{when}: run verify_integrity --baseline {path}."
        return ""

    def _write_path_audit(self) -> Any:
        from deployguard.write_paths import audit, config_from_settings

        return audit(config_from_settings())

    def _check_audit(self, step: Step) -> str:
        assert self._audit is not None
        report, seconds = self._audit.result()
        step.detail = {"seconds": seconds, "alongside": "the pre-checks before it"}
        if report.violations or report.errors:
            return (
                f"The write-path audit found {len(report.violations)} violation(s) and "
                f"{len(report.errors)} unscannable file(s): run `manage.py audit_write_paths`."
            )
        return ""

    # --- deployguard's own tables, before anything else ---

    def bootstrap(self) -> None:
        """Create deployguard's tables when this release brings them: the switch and the record
        live there. Runs frozen (DEPLOYMENT_MODE=true): schema and bookkeeping only."""
        pending = pending_migrations(using=self.using, app="deployguard")
        if not pending:
            return
        with self.step("bootstrap deployguard's tables") as step:
            result = self._manage("migrate", "deployguard", "--noinput", extra={"DEPLOYMENT_MODE": "true"})
            step.detail = {"migrations": pending}
            if result.returncode != 0:
                step.status = "failed"
                raise PipelineStop(
                    EXIT_PRECHECK, f"Could not create deployguard's tables: {result.stderr.strip()[-400:]}"
                )
            step.detail["applied"] = pending

    # --- migrate ---

    def _manage_command(
        self, *args: str, extra: dict[str, str] | None = None, schema_changes_from_start_up: bool = True
    ) -> tuple[list[str], dict[str, str]]:
        manage_py = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0].endswith("manage.py") else None
        if manage_py is None or not manage_py.exists():
            manage_py = Path(settings.BASE_DIR) / "manage.py"
        env = {**os.environ, DEPLOY_ID_VARIABLE: self.deploy_id, **(extra or {})}
        env.pop(guard.SCHEMA_CHANGES_VARIABLE, None)
        if schema_changes_from_start_up:
            env[guard.SCHEMA_CHANGES_VARIABLE] = self._schema_changes_reason()
        return [sys.executable, str(manage_py), *args, f"--verbosity={self.options.verbosity}"], env

    def _schema_changes_reason(self) -> str:
        return f"deploy_safe {self.deploy_id}: migrate"

    def _manage(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command, env = self._manage_command(*args, extra=extra)
        return subprocess.run(  # noqa: S603
            command, env=env, capture_output=True, text=True, check=False, preexec_fn=_die_with_parent
        )

    def start_migrate(self) -> None:
        """Start the migrate subprocess, which starts up and then waits for migrate()'s word.

        Called once deploy mode is on in the shared state, so the subprocess reads "on" from its
        first check and every ready() hook in it runs frozen, schema changes and migrate's
        bookkeeping rows included: it allows those only once told to go. Its start-up (a second Django
        start-up, about a second) then overlaps the wait for other processes, the fingerprints
        and the backup, none of which it touches: it writes nothing until it is told to go.
        """
        handle, self._refusals_report = tempfile.mkstemp(prefix="deploy_safe-refused-", suffix=".jsonl")
        os.close(handle)
        extra: dict[str, str] = {REFUSALS_REPORT_VARIABLE: self._refusals_report}
        if self.options.allow_data_migrations:
            handle, self._data_report = tempfile.mkstemp(prefix="deploy_safe-data-", suffix=".jsonl")
            os.close(handle)
            extra |= {
                DATA_MIGRATION_VARIABLE: ",".join(self.options.allow_data_migrations),
                DATA_MIGRATION_REPORT_VARIABLE: self._data_report,
            }
        # Without DEPLOYGUARD_SCHEMA_CHANGES: it starts up while the fingerprints and the backup
        # are taken, so it starts fully frozen, and allows schema changes once told to go.
        command, env = self._manage_command(
            "deploy_safe_migrate",
            "--database",
            self.using,
            "--schema-changes-reason",
            self._schema_changes_reason(),
            extra=extra,
            schema_changes_from_start_up=False,
        )
        self._migrate_process = subprocess.Popen(  # noqa: S603
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )

    def discard_migrate(self) -> None:
        """End a migrate subprocess that was never told to go: closing its input stops it unmigrated."""
        process, self._migrate_process = self._migrate_process, None
        if process is None:
            return
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        for path in (self._refusals_report, self._data_report):
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def migrate(self) -> str | None:
        """Tell the migrate subprocess to go; the failure in one line, or None."""
        with self.step("migrate") as step:
            pending = pending_migrations(using=self.using)
            step.detail = {"pending": pending, "subprocess_started": "while deploy mode went on"}
            if self._migrate_process is None:
                self.start_migrate()
            process, self._migrate_process = self._migrate_process, None
            assert process is not None
            stdout, stderr = process.communicate(input=f"{MIGRATE_GO}\n")
            returncode = process.returncode
            connections[self.using].close()  # the schema changed under this connection
            step.detail["exit_status"] = returncode
            if self.options.verbosity >= 2 and stdout:
                self.out("", stdout.rstrip())
            if self._data_report:
                with contextlib.suppress(OSError):
                    for line in Path(self._data_report).read_text().splitlines():
                        entry = json.loads(line)
                        self.data_changes[entry["migration"]] = entry["changes"]
                    os.unlink(self._data_report)
                step.detail["data_migration_changes"] = self.data_changes
            refused = _read_refusals(self._refusals_report)
            if returncode == 0 and refused:
                # The code that tried caught the refusal: migrate "succeeded", but this release
                # tries to write during deploys. Named, rolled back and alerted like any other.
                step.status = "failed"
                self.writers = refused
                step.detail["errors"] = refused
                places = sorted({w["where"] or "?" for w in refused})
                return (
                    f"migrate tried {len(refused)} write(s) that deploy mode refused and the code caught: "
                    + "; ".join(places)[:600]
                )
            if returncode != 0:
                step.status = "failed"
                self.writers = parse_writers(stderr, Path(settings.BASE_DIR).resolve())
                named = {(w["where"], w["message"]) for w in self.writers}
                self.writers += [w for w in refused if (w["where"], w["message"]) not in named]
                step.detail["errors"] = self.writers
                step.detail["stderr_tail"] = stderr.strip().splitlines()[-5:]
                blocked = [w for w in self.writers if w["exception"] == "DeployModeActive"]
                named = blocked or self.writers
                if named:
                    first = named[-1]
                    return f"migrate failed: {first['exception']} at {first['where'] or '?'}: {first['message'][:300]}"  # noqa: E501
                return f"migrate exited {returncode}"
        return None

    # --- post-checks ---

    def post_checks(self) -> str | None:
        problems: list[str] = []
        with self.step("post-check: health") as step:
            try:
                with connections[self.using].cursor() as cursor:
                    cursor.execute("SELECT 1")
                still = pending_migrations(using=self.using)
            except DatabaseError as error:
                still, step.detail = [], f"database unreachable: {error}"
                problems.append(f"Database unreachable after migrate: {error}")
            if still:
                problems.append(f"{len(still)} migration(s) still unapplied: {', '.join(still[:5])}")
            if problems:
                step.status = "failed"
        # When the pre-check fingerprinted what the rules read (PostgreSQL), the rules run again
        # only if that changed: else they run now, on their own thread and connection, beside
        # the fingerprints (SQL that SQLite and PostgreSQL run without the GIL).
        integrity = None if self.rule_inputs else self._alongside(self._integrity_counts)
        ran_alongside = integrity is not None
        with self.step("post-check: fingerprints") as step:
            changed = self._compare_fingerprints()
            step.detail = {"schema_changes": self.schema_changes, "differences": changed}
            if self.frozen_horizon is not None:
                step.detail["proved_unwritten"] = len(self.proved_unwritten)
            if changed:
                step.status = "failed"
                problems.append("Data changed during the deploy: " + "; ".join(changed))
        if self.baseline_after_migrate and not changed:
            with self.step("post-check: baseline") as step:
                failure = self._compare_baseline()
                step.detail = {"baseline": str(self.options.baseline), "failure": failure or None}
                if failure:
                    step.status = "failed"
                    problems.append(failure)
        with self.step("post-check: integrity") as step:
            seconds, reused = None, ""
            try:
                if integrity is None:
                    rerun = self._rules_would_see_changes()
                    if rerun:
                        integrity = self._alongside(self._integrity_counts)
                        step.detail = {"ran_again_because": rerun}
                    else:
                        reused = "the tables the rules read are unchanged since the pre-check ran them"
                after, seconds = (dict(self.integrity_before or {}), 0.0) if reused else integrity.result()
            except DatabaseError as error:
                after = None
                problems.append(f"Integrity rules failed to run: {error}")
            if after is not None:
                from deployguard.integrity import default_registry

                before = self.integrity_before
                worse = {
                    rule_id: count
                    for rule_id, count in after.items()
                    if count > (before.get(rule_id, 0) if before is not None else 0)
                    and (before is not None or default_registry.rules[rule_id].severity == "error")
                }
                step.detail = {**(step.detail or {}), "before": before, "after": after, "seconds": seconds}
                if reused:
                    step.detail["reused"] = reused
                elif ran_alongside:
                    step.detail["alongside"] = "the fingerprints"
                if worse:
                    problems.append(
                        "Integrity is worse than before: "
                        + ", ".join(f"{rule_id} {count} rows" for rule_id, count in worse.items())
                    )
            if problems and problems[-1].startswith("Integrity"):
                step.status = "failed"
        return " | ".join(problems) if problems else None

    def _compare_fingerprints(self) -> list[str]:
        """Differences between now and the fingerprints taken before migrate, over the columns
        each table had then; new tables must be empty; tables a named data migration changed
        are reported, not compared. On PostgreSQL a table with the same columns (names, types,
        numbers, the table's oid), all provable, that is proved unwritten since the
        backup's snapshot (fingerprint.unwritten_since) is not hashed again: it holds the very
        rows whose fingerprint was taken."""
        connection = connections[self.using]
        skip = set(bookkeeping_tables()) | set().union(*(set(c) for c in self.data_changes.values()))
        with connection.cursor() as cursor:
            now = set(guard.protected_tables(connection.introspection.table_names(cursor)))
        columns_now = {table: set(columns) for table, columns in column_names(now, using=self.using).items()}
        proved: set[str] = set()
        if self.frozen_horizon is not None:
            types_now = column_types(now & set(self.fingerprints), using=self.using)
            same_types = {
                table: before["count"]
                for table, before in self.fingerprints.items()
                if table not in skip
                and before.get("types") is not None
                and types_now.get(table) == before["types"]
                and provable(before["types"])
            }
            proved = unwritten_since(self.frozen_horizon, same_types, using=self.using)
        self.proved_unwritten = sorted(proved)
        differences: list[str] = []
        for table, before in sorted(self.fingerprints.items()):
            if table in skip:
                continue
            if table not in now:
                self.schema_changes.append(f"{table}: dropped")
                continue
            if table in proved:
                self._unchanged_tables.add(table)
                continue
            dropped = [c for c in before["columns"] if c not in columns_now[table]]
            added = sorted(columns_now[table] - set(before["columns"]))
            if added:
                self.schema_changes.append(f"{table}: columns added {', '.join(added)}")
            if dropped:
                self.schema_changes.append(f"{table}: columns dropped {', '.join(dropped)}; counts compared")
                kept = [c for c in before["columns"] if c in columns_now[table]]
                count = fingerprint_table(table, using=self.using, columns=kept or None).count
                if count != before["count"]:
                    differences.append(f"{table}: {before['count']} rows before, {count} after")
                continue
            fp = fingerprint_table(table, using=self.using, columns=before["columns"])
            if fp.count != before["count"]:
                differences.append(f"{table}: {before['count']} rows before, {fp.count} after")
            elif fp.digest != before["digest"]:
                differences.append(f"{table}: {fp.count} rows both times, contents differ")
            elif not added:
                self._unchanged_tables.add(table)
        for table in sorted(now - set(self.fingerprints) - skip):
            self.schema_changes.append(f"{table}: created")
            count = fingerprint_table(table, using=self.using).count
            if count:
                differences.append(f"{table}: new table holds {count} rows; it must start empty")
        return differences

    # --- undo ---

    def _unchanged(self, manifest: backup.Manifest) -> list[str]:
        differences = backup.compare_fingerprints(manifest.fingerprints, backup.fingerprints(self.using))
        if backup.applied_migrations(self.using) != manifest.migrations:
            differences.append("applied migrations differ")
        return differences

    def roll_back(self, why: str) -> None:
        assert self.backup_path is not None and self.manifest is not None
        with self.step("roll back") as step:
            try:
                differences = self._unchanged(self.manifest)
                if not differences:
                    step.detail = "proved unchanged: fingerprints and applied migrations equal the backup's"
                else:
                    step.detail = {"restored_because": differences}
                    self.job_writers()
                    with job_queue.kept_across_restore(self.using):
                        backup.restore_database(
                            self.backup_path,
                            using=self.using,
                            reason=f"deploy_safe {self.deploy_id} rollback",
                        )
                    state.clear_cache()
                    left = self._unchanged(self.manifest)
                    if left:
                        raise backup.RestoreUnverified("; ".join(left))
            except (backup.RestoreUnverified, backup.RestoreRefused, DatabaseError, OSError) as error:
                step.status = "failed"
                step.detail = {"error": str(error)}
                self.status = "restore_failed"
                message = human_must_act(
                    deploy_id=self.deploy_id, why=why, path=self.backup_path, error=error
                )
                self._finish(EXIT_HUMAN, message)
                self._alert(message)
                raise PipelineStop(EXIT_HUMAN, message) from None
        self.record = self._fresh_record()
        with self.step("deploy mode off") as off:
            off.detail = self._unfreeze(f"deploy_safe {self.deploy_id} rolled back")
        self.status = "rolled_back"
        message = f"Deploy {self.deploy_id} failed and was rolled back ({step.detail if isinstance(step.detail, str) else 'restored from ' + str(self.backup_path)}): {why}"  # noqa: E501
        self._finish(EXIT_RESTORED, message)
        self._alert(message)
        raise PipelineStop(EXIT_RESTORED, message)

    def _fresh_record(self) -> Any:
        """The record, re-saved from memory after a restore put back the backup's copy."""
        record = self.record
        if record is not None:
            record._state.adding = False  # update the restored row, or insert it if it is gone
        return record

    def _alert(self, message: str) -> None:
        with contextlib.suppress(Exception):
            mail_admins(f"deploy_safe {self.deploy_id}: {self.status}", message, fail_silently=True)

    # --- recovery ---

    def recover(self) -> int:
        from deployguard.models import DeployRecord

        with origin.origin("deploy_safe --recover"):
            try:
                with self.step("one deploy at a time"):
                    if not self.lock.acquire(self.deploy_id, state.os_actor()):
                        raise PipelineStop(EXIT_PRECHECK, ANOTHER_DEPLOY.format(who=self._running_deploy()))
                record = DeployRecord.objects.using(self.using).filter(status="running").first()
                if record is None:
                    self.message = "No incomplete deploy to recover."
                    return EXIT_DEPLOYED
                self.record, self.deploy_id, self.started_at = record, record.deploy_id, record.started_at
                self.steps = [Step(**s) for s in record.report.get("steps", [])] + self.steps
                with self.step("recover") as step:
                    try:
                        if record.backup_path:
                            self.backup_path = Path(record.backup_path)
                            manifest = backup.check_backup(self.backup_path, using=self.using)
                            differences = self._unchanged(manifest)
                            if differences:
                                with job_queue.kept_across_restore(self.using):
                                    backup.restore_database(
                                        self.backup_path, using=self.using, reason="deploy_safe --recover"
                                    )
                                state.clear_cache()
                                if left := self._unchanged(manifest):
                                    raise backup.RestoreUnverified("; ".join(left))
                                step.detail = {"restored_because": differences}
                            else:
                                step.detail = (
                                    "proved unchanged: fingerprints and applied migrations equal the backup's"
                                )
                        else:
                            step.detail = "killed before its backup was made, so before migrate: nothing ran"
                    except (backup.RestoreUnverified, backup.RestoreRefused, DatabaseError, OSError) as error:
                        step.status = "failed"
                        self.status = "restore_failed"
                        message = human_must_act(
                            deploy_id=self.deploy_id,
                            why="killed mid-deploy",
                            path=self.backup_path,
                            error=error,
                        )
                        self._finish(EXIT_HUMAN, message)
                        self._alert(message)  # a person must act: the one case that must never be silent
                        raise PipelineStop(EXIT_HUMAN, message) from None
                self.record = self._fresh_record()
                with self.step("deploy mode off") as off:
                    off.detail = self._unfreeze(f"deploy_safe --recover {self.deploy_id}")
                self.status = "recovered"
                self._finish(EXIT_DEPLOYED, f"Recovered deploy {self.deploy_id}: {step.detail}.")
            except PipelineStop as stop:
                self.exit_status, self.message = stop.exit_status, stop.message
            finally:
                self.lock.release()
        return self.exit_status


__all__ = [
    "EXIT_DEPLOYED",
    "EXIT_HUMAN",
    "EXIT_MISUSE",
    "EXIT_PRECHECK",
    "EXIT_RESTORED",
    "Options",
    "Pipeline",
]
