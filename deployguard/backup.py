"""Verified backups of the whole database, each with a manifest, and verified restores.

SQLite: the online backup API into a temporary file beside the target, PRAGMA
integrity_check (split so that it uses both cores: integrity_problems), then the file
and its manifest are put in place together (place()); restore through the backup API
into the live database, never by replacing the file under open connections.
PostgreSQL: `pg_dump -Fc`, then `pg_restore --list` to prove the file reads; restore
in one transaction, so a failed restore changes nothing (deployguard.restore_pg; the tools
themselves: deployguard.pg_tools).
The manifest beside each backup records the engine, database, applied migrations,
the fingerprints of the protected tables, the size and the SHA-256 of the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.color import no_style
from django.db import DatabaseError, connections, models, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from deployguard import files, freeze, freeze_sqlite, restore_pg, state, written
from deployguard.allowances import allow_writes
from deployguard.delta_pg import Delta
from deployguard.fingerprint import PIN_RUNNING
from deployguard.fingerprints import Digests, current_digests
from deployguard.fingerprints import differences as fingerprint_differences
from deployguard.pg_tools import BackupError, postgres_environment, run, started
from deployguard.sqlite_check import integrity_problems

MANIFEST_SUFFIX = ".manifest.json"
# Seconds to wait for SQLite's write lock before a backup.
_LOCK_TIMEOUT = 30

MANIFEST_VERSION = 1
SUFFIXES = {"sqlite": ".sqlite3", "postgresql": ".dump"}
MANIFEST_MAX_BYTES = 16 * files.MiB  # a count and a digest per table: far less
MAGIC = {"sqlite": b"SQLite format 3\x00", "postgresql": b"PGDMP"}
"""How each engine's backup file begins (SQLite's header; pg_dump's custom format)."""


class RestoreRefused(Exception):
    """The file does not match its manifest or this database; nothing was touched."""


class NotABackup(RestoreRefused):
    """The path (or its manifest) is not a backup_db file at all: a FIFO, a device, a directory,
    a file too large, not JSON, not the engine's format. Refused before it is read."""


class RestoreUnverified(Exception):
    """The restore ran but the data does not match the manifest: a person must look."""


@dataclass
class Manifest:
    engine: str
    database: str
    created_at: str
    migrations: dict[str, list[str]]
    fingerprints: dict[str, dict[str, Any]]
    file: str
    size: int
    sha256: str
    version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    deploy_id: str = ""  # the deploy_safe run that took it ("" for backup_db)

    @classmethod
    def read(cls, backup: Path) -> Manifest:
        path = manifest_path(backup)
        if not path.exists() and not path.is_symlink():
            raise NotABackup(f"No manifest at {path}: restore only files made by `manage.py backup_db`.")
        try:
            data = json.loads(files.read_text(path, what="the manifest", max_bytes=MANIFEST_MAX_BYTES))
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return cls(**data)
        except files.BadFile as error:
            raise NotABackup(str(error)) from None
        except (ValueError, TypeError) as error:
            raise NotABackup(f"The manifest {path} is unreadable ({error}).") from None


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def default_backup_dir() -> Path:
    return Path(getattr(settings, "DEPLOYGUARD_BACKUP_DIR", Path(settings.BASE_DIR) / "var" / "backups"))


def default_backup_path(using: str = "default", directory: Path | None = None, *, label: str = "") -> Path:
    """<dir>/<database>[-<label>]-<UTC time>.<ext>: `label` says why (before-restore)."""
    connection = connections[using]
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%fZ")
    name = Path(str(connection.settings_dict["NAME"])).stem or "database"
    name = f"{name}-{label}" if label else name
    return (directory or default_backup_dir()) / f"{name}-{stamp}{SUFFIXES.get(connection.vendor, '.bak')}"


def applied_migrations(using: str = "default") -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in sorted(MigrationRecorder(connections[using]).applied_migrations()):
        applied.setdefault(app, []).append(name)
    return applied


def copy_sqlite(source_name: str, target: Path, copied: threading.Event) -> str:
    """Copy the database into `target` through the backup API, set `copied`, then check the copy
    and hash it. SQLite and hashlib release the GIL while they work, so this runs on the second
    core while the fingerprints run on the first. Returns the copy's SHA-256."""
    try:
        source = sqlite3.connect(f"{Path(source_name).resolve().as_uri()}?mode=ro", uri=True)
        try:
            destination = sqlite3.connect(target)
            try:
                source.backup(destination)
                _self_contained(destination)
            finally:
                destination.close()
        finally:
            source.close()
    finally:
        copied.set()
    return checked_sha256(target)


def _self_contained(copy: sqlite3.Connection) -> None:
    """A copy of a WAL database is in WAL mode too, and every connection that reads it would
    leave -wal and -shm files beside it: make it one file, in rollback-journal mode."""
    copy.execute("PRAGMA journal_mode = DELETE")


def checked_sha256(target: Path) -> str:
    """PRAGMA integrity_check on the copy, and its SHA-256, side by side: SQLite and hashlib
    both release the GIL while they work."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="backup_db-check") as pool:
        digest = pool.submit(sha256_of, target)
        problems = integrity_problems(target, pool)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise BackupError(f"The copy failed SQLite's integrity check: {'; '.join(problems[:3])}{more}")
        return digest.result()


@contextlib.contextmanager
def _sqlite_copy(copy: Copy) -> Iterator[None]:
    """Copy the database into `copy.temporary` while a third connection holds the write lock
    and the block runs: other writers queue (readers carry on), so what the block reads
    describes exactly the copy.

    The copy is made in a thread through a connection of its own, at the same time as the
    block; the lock is released once both are done, while the copy is checked and hashed. The
    lock is held on a separate connection because SQLite's backup API cannot copy from a
    connection that is itself inside a write transaction.
    """
    connection = connections[copy.using]
    connection.ensure_connection()
    # Django probes JSON support on first introspection inside a transaction, which with
    # transaction_mode IMMEDIATE waits the whole busy timeout for the lock taken below,
    # then caches "unsupported". Probe it before taking the lock.
    _ = connection.features.supports_json_field
    if connection.is_in_memory_db():  # no other connection can see it: one thing at a time
        yield
        destination = sqlite3.connect(copy.temporary)
        try:
            connection.connection.backup(destination)
            _self_contained(destination)
        finally:
            destination.close()
        copy.sha256 = checked_sha256(copy.temporary)
        return
    name = str(connection.settings_dict["NAME"])
    locker = sqlite3.connect(name, timeout=_LOCK_TIMEOUT)
    copied = threading.Event()
    try:
        locker.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup_db") as pool:
            checked = pool.submit(copy_sqlite, name, copy.temporary, copied)
            try:
                yield
            finally:
                copied.wait()
                locker.rollback()
            copy.sha256 = checked.result()
    finally:
        locker.close()


@contextlib.contextmanager
def _postgresql_copy(copy: Copy) -> Iterator[None]:
    """pg_dump the snapshot in which the block's queries run, while they run: pg_dump is a
    process of its own, and so is the server backend that answers the block. Then prove the
    file reads with pg_restore --list while a thread hashes it."""
    connection = connections[copy.using]
    env = postgres_environment(copy.using)
    dump = ["pg_dump", "--format=custom", "--file", str(copy.temporary)]
    with transaction.atomic(using=copy.using):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(f"SELECT pg_export_snapshot(), {PIN_RUNNING}")  # for snapshot_horizon()
            (snapshot, _running) = cursor.fetchone()
        # The snapshot can be imported while this transaction is open: it stays open until pg_dump ends.
        with started([*dump, f"--snapshot={snapshot}"], env):
            yield
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup_db") as pool:
        digest = pool.submit(sha256_of, copy.temporary)
        run(["pg_restore", "--list", str(copy.temporary)], env)
        copy.sha256 = digest.result()


@dataclass
class Copy:
    """A backup being made (copying()): where it goes, and what its manifest will say."""

    path: Path
    temporary: Path
    using: str
    sha256: str = ""
    fingerprints: Digests | None = None
    migrations: dict[str, list[str]] | None = None
    manifest: Manifest | None = None

    def describe(self, fingerprints: Digests, migrations: dict[str, list[str]]) -> None:
        """What the manifest records of the data being copied, read while it is held still."""
        self.fingerprints, self.migrations = fingerprints, migrations


@contextlib.contextmanager
def copying(
    output: Path | None = None, *, using: str = "default", overwrite: bool = False, deploy_id: str = ""
) -> Iterator[Copy]:
    """Make a verified backup of the database while the block runs, with the data held still
    for both: SQLite's write lock, or on PostgreSQL the dump's snapshot, in which the block's
    queries run. The block reads what the manifest records and hands it to `copy.describe()`.

    After the block the copy is checked and in place with its manifest (`copy.path`,
    `copy.manifest`); BackupError when it could not be made or proved readable, and then
    nothing is left at the path. A backup already at the path is refused (BackupError)
    before any work, unless `overwrite`.
    """
    connection = connections[using]
    target = Path(output) if output else default_backup_path(using)
    if not overwrite:
        refuse_existing(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as error:
        raise BackupError(
            f"Cannot write to {target.parent}: {error.strerror}. Choose a writable directory."
        ) from None
    os.close(handle)
    copy = Copy(path=target, temporary=Path(temporary_name), using=using)
    try:
        if connection.vendor == "sqlite":
            copy.temporary.unlink()
            held = _sqlite_copy(copy)
        elif connection.vendor == "postgresql":
            held = _postgresql_copy(copy)
        else:
            raise BackupError(f"backup_db supports SQLite and PostgreSQL, not {connection.vendor}.")
        with held:
            yield copy
        if copy.fingerprints is None or copy.migrations is None:
            raise BackupError("The backup was not described: call copy.describe() inside the block.")
        copy.manifest = Manifest(
            engine=connection.vendor,
            database=str(connection.settings_dict["NAME"]),
            created_at=timezone.now().isoformat(),
            migrations=copy.migrations,
            fingerprints=copy.fingerprints,
            file=target.name,
            size=copy.temporary.stat().st_size,
            sha256=copy.sha256,
            deploy_id=deploy_id,
        )
        place(copy.temporary, copy.manifest, target, overwrite=overwrite)
    except OSError as error:
        raise BackupError(f"Writing {target} failed: {error.strerror or error}.") from None
    except (sqlite3.Error, DatabaseError) as error:
        raise BackupError(f"The database refused the backup: {error}.") from None
    finally:
        copy.temporary.unlink(missing_ok=True)


def refuse_existing(target: Path) -> None:
    """BackupError when a backup (or its manifest) is already at `target`."""
    for path in (target, manifest_path(target)):
        if path.exists() or path.is_symlink():
            raise BackupError(
                f"{path} already exists: choose another --output, or pass --overwrite to replace it."
            )


def _link(source: Path, destination: Path) -> None:
    """Give `source` the name `destination` too, failing if that name is taken (never clobbers)."""
    try:
        os.link(source, destination)
    except FileExistsError:
        raise
    except OSError as error:  # a file system without hard links
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if destination.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(destination)) from None
        shutil.copy2(source, destination)


def place(temporary: Path, manifest: Manifest, target: Path, *, overwrite: bool = False) -> None:
    """Put a finished backup at `target` with its manifest: both, or neither.

    The manifest goes first, so that a backup file at a path always has its manifest; the
    file's arrival completes the pair. When putting the file in place fails, the manifest is
    taken away again. (If the process is killed between the two, what is left is a manifest
    whose file is missing: restore_db refuses it and `backup_db --list` shows it incomplete.)
    The names are taken with link(), which fails rather than replace a backup another process
    put there meanwhile; `overwrite` removes the old pair first, once the new one is ready.
    """
    written = manifest_path(temporary)
    written.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    try:
        if overwrite:
            manifest_path(target).unlink(missing_ok=True)
            target.unlink(missing_ok=True)
        try:
            _link(written, manifest_path(target))
        except FileExistsError:
            refuse_existing(target)
            raise
        try:
            _link(temporary, target)
        except BaseException as error:
            manifest_path(target).unlink(missing_ok=True)
            if isinstance(error, FileExistsError):
                refuse_existing(target)
            raise
    finally:
        written.unlink(missing_ok=True)


def rewrite_manifest(target: Path, manifest: Manifest) -> None:
    """Replace the manifest of the backup at `target` (written through to the disk, then renamed
    over the old one: a reader sees one or the other, whole)."""
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.manifest.", dir=target.parent)
    try:
        with os.fdopen(handle, "w") as written:
            written.write(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
            written.flush()
            os.fsync(written.fileno())
        os.replace(name, manifest_path(target))
        files.durable(manifest_path(target))
    finally:
        Path(name).unlink(missing_ok=True)


def backup_database(
    output: Path | None = None,
    *,
    using: str = "default",
    overwrite: bool = False,
    on_table: Callable[[int, int, int], None] | None = None,
) -> tuple[Path, Manifest]:
    """Write a verified backup and its manifest (the protected tables' fingerprints and the
    applied migrations, read while the copy is made); return the backup's path and manifest.
    `on_table(done, total, rows)` is called as each table is fingerprinted."""
    with copying(output, using=using, overwrite=overwrite) as copy:
        copy.describe(current_digests(using=using, on_table=on_table), applied_migrations(using))
    assert copy.manifest is not None
    return copy.path, copy.manifest


def database_name(using: str = "default") -> str:
    return str(connections[using].settings_dict["NAME"])


def check_backup(backup: Path, *, using: str = "default", other_database: bool = False) -> Manifest:
    """The manifest of `backup` after proving the file is the one it describes, for this database."""
    vendor = connections[using].vendor
    if not backup.exists() and not backup.is_symlink():
        raise NotABackup(f"No backup file at {backup}.")
    try:
        with files.open_regular(backup, what="the backup", max_bytes=None, text=False) as handle:
            start = handle.read(len(MAGIC.get(vendor, b"")))
    except files.BadFile as error:
        raise NotABackup(str(error)) from None
    manifest = Manifest.read(backup)
    if manifest.engine != vendor:
        raise RestoreRefused(
            f"{backup} is a {manifest.engine} backup and this database is {vendor}: "
            "restore it into a database of the same engine."
        )
    if start != MAGIC.get(vendor, start):
        raise NotABackup(f"{backup} is not a {vendor} backup: it does not begin as backup_db's files do.")
    if manifest.database != database_name(using) and not other_database:
        raise RestoreRefused(
            f"{backup} is a backup of {manifest.database}, and this database is {database_name(using)}: "
            "restoring it here would replace another database's data. Point DATABASE_URL at "
            f"{manifest.database}, or pass --into-other-database if that is what you mean."
        )
    actual = sha256_of(backup)
    if actual != manifest.sha256:
        raise RestoreRefused(
            f"{backup} does not match its manifest (SHA-256 {actual[:12]}…, expected "
            f"{manifest.sha256[:12]}…): the file is damaged or was changed; use another backup."
        )
    delta_of(backup, manifest)
    return manifest


def delta_of(backup: Path, manifest: Manifest) -> Delta | None:
    """The delta the manifest names beside `backup` (deployguard.delta_pg), proved to be the file
    it describes; None when it names none. RestoreRefused when it is missing or differs."""
    try:
        delta = Delta.of(manifest.extra)
    except ValueError as error:
        raise NotABackup(f"The manifest of {backup} is unreadable ({error}).") from None
    if delta is None:
        return None
    path = delta.path(backup)
    try:
        files.check_regular(path, what="the backup's delta", max_bytes=None)
    except files.BadFile as error:
        raise RestoreRefused(f"{error} It holds the tables written just before the freeze: without it "
                             "the backup is incomplete; use another backup.") from None  # fmt: skip
    if sha256_of(path) != delta.sha256:
        raise RestoreRefused(
            f"{path}, the delta of {backup}, does not match its manifest: the file is damaged or was "
            "changed; use another backup."
        )
    return delta


def _restore_sqlite(backup: Path, using: str) -> None:
    connection = connections[using]
    connection.close()
    connection.ensure_connection()
    function = freeze_sqlite.current_function(connection.connection)  # frozen now: restored frozen
    source_path = freeze_sqlite.frozen_copy(backup, function, freeze.is_freezable) if function else backup
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    try:
        source.backup(connection.connection)
    finally:
        source.close()
        if source_path != backup:
            source_path.unlink(missing_ok=True)


def _own_tables(using: str) -> list[tuple[type[models.Model], str]]:
    """deployguard's own models and tables that exist now (deploy mode, deploys, scrub runs, …)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
    own = apps.get_app_config("deployguard").get_models(include_auto_created=True)
    return [(model, model._meta.db_table) for model in own if model._meta.db_table in existing]


@contextlib.contextmanager
def kept_own_records(using: str = "default") -> Iterator[list[str]]:
    """Around a restore: deployguard's own tables (the deploy-mode switch and its history, deploy
    records, scrub runs, …) hold afterwards what they held before it. They describe what
    happened, the restore included; a backup's older copy of them would undo deploy mode's
    state and erase the account of what was done since. Yields the tables kept."""
    connection = connections[using]
    quote = connection.ops.quote_name
    kept: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    tables = _own_tables(using)
    with connection.cursor() as cursor:
        for _, table in tables:
            cursor.execute(f"SELECT * FROM {quote(table)}")  # noqa: S608
            kept[table] = ([column[0] for column in cursor.description], cursor.fetchall())
    yield sorted(kept)
    now = _own_tables(using)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for _, table in now:
            if table not in kept:
                continue
            columns_now = {c.name for c in connection.introspection.get_table_description(cursor, table)}
            names, rows = kept[table]
            wanted = [i for i, name in enumerate(names) if name in columns_now]
            cursor.execute(f"DELETE FROM {quote(table)}")  # noqa: S608
            if rows:
                columns = ", ".join(quote(names[i]) for i in wanted)
                marks = ", ".join(["%s"] * len(wanted))
                cursor.executemany(
                    f"INSERT INTO {quote(table)} ({columns}) VALUES ({marks})",  # noqa: S608
                    [tuple(row[i] for i in wanted) for row in rows],
                )
        for statement in connection.ops.sequence_reset_sql(no_style(), [model for model, _ in now]):
            cursor.execute(statement)


def restore_database(
    backup: Path,
    *,
    using: str = "default",
    reason: str = "restore_db",
    other_database: bool = False,
    on_table: Callable[[int, int, int], None] | None = None,
) -> Manifest:
    """Put the database back as `backup` holds it, then prove it by fingerprints (`on_table`:
    called as each table is fingerprinted)."""
    manifest = check_backup(backup, using=using, other_database=other_database)
    vendor = connections[using].vendor
    with allow_writes(reason):
        try:
            with kept_own_records(using):
                if vendor == "sqlite":
                    _restore_sqlite(backup, using)
                else:
                    # check_backup() proved the delta, if any, to be its file
                    restore_pg.restore(backup, using, manifest.fingerprints, Delta.of(manifest.extra))
            # A backup taken during a deploy holds the database freeze's triggers, on, and its write tracking.
            state.match_freeze(using)
            written.stop(using)
        except (BackupError, sqlite3.Error, DatabaseError) as error:
            raise RestoreUnverified(f"The restore from {backup} failed: {error}") from None
    differences = fingerprint_differences(
        manifest.fingerprints, current_digests(using=using, on_table=on_table)
    )
    if differences:
        raise RestoreUnverified(
            f"After restoring {backup} the data does not match its manifest: {'; '.join(differences)}."
        )
    return manifest
