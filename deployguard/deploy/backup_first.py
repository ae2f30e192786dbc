"""The backup before the freeze, and the proof at the freeze that it still holds the data.

What the site's users pay for a deploy is the freeze: deploy mode on, writes refused. So
deploy_safe copies and fingerprints the database *before* deploy mode goes on, while the site
still writes, and at the freeze proves which tables nobody wrote since the copy. Only those that
were written are copied and hashed again, under the freeze; the backup deploy_safe restores
from holds exactly the data at the freeze either way.

- PostgreSQL: pg_dump and the fingerprints share one snapshot (backup.copying()). At the
  freeze the write log (deployguard.written_pg, kept since before the pre-checks) proves each
  table unwritten since that snapshot; without a log, the snapshot's horizon (fingerprint.
  unwritten_since: no row version newer, same row count, same columns). The dump's sequences
  are compared with the database's too (deployguard.sequences: a rolled-back INSERT moves one
  without a write). When anything moved, the dump is made again under the freeze, with the
  proved tables' fingerprints kept and only the others hashed (a custom dump cannot be patched
  table by table). The dump holds no freeze; a restore while frozen installs it in the
  restore's own transaction (backup.restore_database).
- SQLite (a database file): deployguard.written counts every write to each protected table
  from before the pre-checks until the deploy ends (deploy_safe starts it). The copy is made
  through the backup API from a read transaction, which also reads the counts: writers wait
  for the page copy, not for the checks or the hashing, and are never refused. The
  fingerprints are taken afterwards from the live database; a table written while they ran is
  marked stale. At the freeze a table whose count moved, or that is stale, is copied again
  into the backup (its rows and its sqlite_sequence entry, in one transaction) and hashed
  again. A table whose definition changed, or one added or dropped, makes the whole copy
  again, as before.
- An in-memory SQLite database (tests) has no second connection to count with: it is
  backed up under the freeze, as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from deployguard import backup, conf, delta_pg, fingerprints, pg_tools, sequences, written, written_pg
from deployguard.files import durable
from deployguard.fingerprint import PIN_RUNNING, provable, snapshot_horizon, unwritten_since
from deployguard.fingerprints import FingerprintsAt, TableFingerprint
from deployguard.sqlite_check import integrity_problems

logger = logging.getLogger("deployguard")


@dataclass
class Early:
    """A backup taken before the freeze, not yet proved to hold the data at the freeze."""

    using: str
    target: Path
    deploy_id: str
    fingerprints: FingerprintsAt
    # PostgreSQL: the finished backup, in place at `target`, and the sequences it sets.
    manifest: backup.Manifest | None = None
    sequence_positions: dict[str, sequences.Position] = field(default_factory=dict)
    # SQLite: the copy, not yet in place; the write counts read with it; the tables written
    # while the fingerprints were taken; and the copy's SHA-256.
    temporary: Path | None = None
    at_copy: written.Mark | None = None
    stale: set[str] = field(default_factory=set)
    sha256: str = ""


WRITTEN_AGAIN = "the tables written since"


@dataclass(frozen=True)
class Proved:
    """The backup that holds the data at the freeze, and how it was proved."""

    path: Path
    manifest: backup.Manifest
    fingerprints: FingerprintsAt
    written_since: list[str]  # tables written between the copy and the freeze
    copied_again: str  # "nothing", WRITTEN_AGAIN, or "everything"


def supported(using: str) -> bool:
    """Whether the backup is taken before the freeze: PostgreSQL, or a SQLite file. A restore
    while deploy mode is on gives either back frozen from its first instant (backup.restore_database:
    SQLite through a copy carrying the freeze's triggers, PostgreSQL by installing the freeze in
    the restore's own transaction), so a dump that holds no freeze is safe to restore from. Not
    an in-memory SQLite database (tests): no second connection to count with."""
    connection = connections[using]
    return connection.vendor == "postgresql" or (
        connection.vendor == "sqlite" and not connection.is_in_memory_db()
    )


def _name(using: str) -> str:
    return str(connections[using].settings_dict["NAME"])


def take(target: Path, *, using: str, deploy_id: str, earlier: FingerprintsAt | None) -> Early:
    """The backup and the fingerprints, taken while the site still writes. BackupError (or a
    DatabaseError, OSError) when it could not be made; nothing is left at `target` then."""
    if connections[using].vendor == "postgresql":
        # A dump without the freeze is restored while frozen through psql (backup.restore_database):
        # a missing psql fails the deploy here, with nothing frozen, not its rollback.
        pg_tools.executable("psql")
        with backup.copying(target, using=using, deploy_id=deploy_id) as copy:
            tables = fingerprints.take(using=using, earlier=earlier)
            horizon = snapshot_horizon(using=using)
            with connections[using].cursor() as cursor:
                snapshot = written_pg.snapshot(cursor)  # the dump's: copying() runs the block in it
            copy.describe(fingerprints.digests(tables), backup.applied_migrations(using))
        assert copy.manifest is not None
        durable(copy.path)
        taken = FingerprintsAt(tables, horizon, snapshot=snapshot)
        try:
            positions = sequences.in_dump(copy.path, using=using)
        except (OSError, subprocess.CalledProcessError) as error:
            raise backup.BackupError(f"pg_restore could not list the dump's sequences: {error}") from None
        return Early(using, copy.path, deploy_id, taken, manifest=copy.manifest, sequence_positions=positions)
    return _take_sqlite(target, using=using, deploy_id=deploy_id)


def _take_sqlite(target: Path, *, using: str, deploy_id: str) -> Early:
    name = _name(using)
    backup.refuse_existing(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(prefix=_temporary_prefix(deploy_id), dir=target.parent)
    except OSError as error:
        raise backup.BackupError(
            f"Cannot write to {target.parent}: {error.strerror}. Choose a writable directory."
        ) from None
    os.close(handle)
    temporary = Path(temporary_name)
    temporary.unlink()
    try:
        at_copy = _copy(name, temporary)
        # The checks on the copy on two threads (SQLite and hashlib release the GIL), the
        # fingerprints of the live database on this one.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="backup_first") as pool:
            digest = pool.submit(backup.sha256_of, temporary)
            problems = pool.submit(integrity_problems, temporary)
            tables = fingerprints.take(using=using)
            after = written.mark_now(name)
            _raise_if_unsound(problems.result())
            sha256 = digest.result()
        durable(temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # A table written while it was hashed has a fingerprint of neither moment: hashed again at the freeze.
    stale = set(tables) - after.unwritten_since(at_copy)
    return Early(
        using, target, deploy_id, FingerprintsAt(tables), temporary=temporary, at_copy=at_copy,
        stale=stale, sha256=sha256,
    )  # fmt: skip


def _temporary_prefix(deploy_id: str) -> str:
    """The start of the name of a deploy's copy until it is proved (discard_leftovers() finds it)."""
    return f".deploy_safe-{deploy_id}."


def discard_leftovers(directory: Path, deploy_id: str) -> list[str]:
    """Remove the unproved copy a killed deploy left in `directory`; the names removed."""
    removed = []
    for path in directory.glob(_temporary_prefix(deploy_id) + "*"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path.name)
    return removed


def _copy(name: str, temporary: Path) -> written.Mark:
    """Copy the database into `temporary` from one read transaction, which also reads the write
    counts; the copy is made one file (rollback journal) without the counting triggers."""
    source = sqlite3.connect(f"{Path(name).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        source.execute("BEGIN")
        at_copy = written.mark(source)  # its first read starts the snapshot the copy is made from
        destination = sqlite3.connect(temporary, isolation_level=None)
        try:
            source.backup(destination)
            written.remove_from(destination)
            destination.execute("PRAGMA journal_mode = DELETE")
        finally:
            destination.close()
        source.execute("COMMIT")
    finally:
        source.close()
    return at_copy


def _raise_if_unsound(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise backup.BackupError(f"The copy failed SQLite's integrity check: {'; '.join(problems[:3])}{more}")


def prove(early: Early) -> Proved | None:
    """Under the freeze: the backup proved (or made) to hold the data now. None when it must be
    made again whole (SQLite: a table's definition changed since the copy); the caller does."""
    if early.manifest is not None:
        return _prove_postgresql(early)
    return _prove_sqlite(early)


def _prove_postgresql(early: Early) -> Proved:
    using, before = early.using, early.fingerprints
    assert early.manifest is not None and before.horizon is not None
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute(f"SELECT {PIN_RUNNING}")
        now = fingerprints.protected_tables_now(using=using)
        types = fingerprints.types_now(now, using=using)
        same = {
            table: fp.count
            for table, fp in before.tables.items()
            if fp.types is not None and types.get(table) == fp.types and provable(fp.types)
        }
        # The write log when deploy_safe kept one since before the dump; else every row's version.
        logged = (
            written_pg.unwritten_since(connections[using], before.snapshot, same) if before.snapshot else None
        )
        proved = logged if logged is not None else unwritten_since(before.horizon, same, using=using)
    written = sorted((set(now) | set(before.tables)) - proved)
    # A sequence moved without a write (a rolled-back INSERT, nextval()): the dump would set it back.
    moved = sequences.moved(early.sequence_positions, using=using)
    changed = written + [f"{name} (sequence)" for name in moved]
    if delta_pg.large_objects(using=using):  # their writes are neither logged nor frozen
        changed.append("large objects")
    if not changed:
        return Proved(early.target, early.manifest, before, [], "nothing")
    # Only those tables dumped again (their sequences with them), when they can be replayed.
    again = sorted(set(written) | {table for table in moved.values() if table is not None})
    replayable = (
        set(now) == set(before.tables)
        and set(again) <= set(same)
        and None not in moved.values()  # a sequence no table owns: no table's dump brings it
        and "large objects" not in changed
    )
    if replayable and not delta_pg.replay_problems(again, using=using):
        return _with_delta(early, again, proved, changed)
    # Else the whole dump again (a custom-format dump cannot be patched): hash only what changed.
    path = backup.default_backup_path(using, early.target.parent, label="frozen")
    with backup.copying(path, using=using, deploy_id=early.deploy_id) as copy:
        tables = fingerprints.take(using=using, earlier=before)
        horizon = snapshot_horizon(using=using)
        with connections[using].cursor() as cursor:
            snapshot = written_pg.snapshot(cursor)
        copy.describe(fingerprints.digests(tables), backup.applied_migrations(using))
    assert copy.manifest is not None
    discard(early)
    at_freeze = FingerprintsAt(tables, horizon, snapshot=snapshot)
    return Proved(copy.path, copy.manifest, at_freeze, changed, "everything")


def _with_delta(early: Early, again: list[str], proved: set[str], changed: list[str]) -> Proved:
    """Under the freeze: the tables in `again` dumped into the dump's delta (deployguard.delta_pg)
    and hashed again; the others keep the fingerprints the dump recorded. The manifest then
    describes the pair, at the freeze."""
    using, before = early.using, early.fingerprints
    assert early.manifest is not None
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        hashed = fingerprints.take(using=using, only=again)
        horizon = snapshot_horizon(using=using)
        snapshot = written_pg.snapshot(cursor)
    tables = {**{table: before.tables[table] for table in proved}, **hashed}
    delta = delta_pg.take(
        early.target, again, using=using, temporary_prefix=_temporary_prefix(early.deploy_id)
    )
    manifest = dataclasses.replace(
        early.manifest,
        fingerprints=fingerprints.digests(tables),
        extra={**early.manifest.extra, **delta.as_extra()},
    )
    backup.rewrite_manifest(early.target, manifest)
    return Proved(
        early.target, manifest, FingerprintsAt(tables, horizon, snapshot=snapshot), changed, WRITTEN_AGAIN
    )


def _prove_sqlite(early: Early) -> Proved | None:
    using, name = early.using, _name(early.using)
    assert early.temporary is not None and early.at_copy is not None
    at_freeze = written.mark_now(name)
    now = set(fingerprints.protected_tables_now(using=using))
    before = early.fingerprints.tables
    redefined = now != set(before) or any(
        early.at_copy.schema.get(table, ("",))[0] != at_freeze.schema.get(table, ("",))[0] for table in now
    )
    if redefined:
        discard(early)
        return None
    changed = sorted((now - at_freeze.unwritten_since(early.at_copy)) | early.stale)
    # SQLite's own tables (sqlite_stat1) are never counted: small, so compared by hashing them.
    own = [table for table in changed if table.startswith("sqlite_")]
    if own:
        hashed = fingerprints.take(using=using, only=own)
        changed = [t for t in changed if t not in own or hashed[t].as_digest() != before[t].as_digest()]
    tables: dict[str, TableFingerprint] = dict(before)
    sha256 = early.sha256
    if changed:
        _copy_tables(name, early.temporary, changed)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="backup_first") as pool:
            digest = pool.submit(backup.sha256_of, early.temporary)
            problems = pool.submit(_tables_sound, early.temporary, changed)
            tables.update(fingerprints.take(using=using, only=changed))
            _raise_if_unsound(problems.result())
            sha256 = digest.result()
    connection = connections[using]
    manifest = backup.Manifest(
        engine=connection.vendor,
        database=name,
        created_at=timezone.now().isoformat(),
        migrations=backup.applied_migrations(using),
        fingerprints=fingerprints.digests(tables),
        file=early.target.name,
        size=early.temporary.stat().st_size,
        sha256=sha256,
        deploy_id=early.deploy_id,
    )
    if changed:
        durable(early.temporary)  # the pages copied again (the rest is on disk already)
    backup.place(early.temporary, manifest, early.target)
    early.temporary.unlink(missing_ok=True)
    durable(backup.manifest_path(early.target))
    proved = FingerprintsAt(tables, mark=at_freeze)
    return Proved(early.target, manifest, proved, changed, WRITTEN_AGAIN if changed else "nothing")


def _copy_tables(name: str, temporary: Path, tables: list[str]) -> None:
    """Replace `tables` in the copy with their rows in the (frozen) database, sqlite_sequence
    entries included, in one transaction."""
    quote = written._quote
    # Opened as a URI, so that ATTACH takes one too (read-only).
    copy = sqlite3.connect(temporary.resolve().as_uri(), uri=True, isolation_level=None)
    try:
        copy.execute("ATTACH DATABASE ? AS live", [f"{Path(name).resolve().as_uri()}?mode=ro"])
        copy.execute("BEGIN IMMEDIATE")
        try:
            # The site's own triggers must not fire in the copy (they would change other tables):
            # dropped for the copying and created again as they were, in the same transaction.
            triggers = copy.execute(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger'"
            ).fetchall()
            for trigger, _sql in triggers:
                copy.execute(f"DROP TRIGGER main.{quote(trigger)}")
            for table in tables:
                copy.execute(f"DELETE FROM main.{quote(table)}")  # noqa: S608
                copy.execute(f"INSERT INTO main.{quote(table)} SELECT * FROM live.{quote(table)}")  # noqa: S608
            if _has_sequences(copy, "live") and _has_sequences(copy, "main"):
                marks = ", ".join("?" * len(tables))
                copy.execute(f"DELETE FROM main.sqlite_sequence WHERE name IN ({marks})", tables)  # noqa: S608
                copy.execute(
                    "INSERT INTO main.sqlite_sequence "  # noqa: S608
                    f"SELECT * FROM live.sqlite_sequence WHERE name IN ({marks})",
                    tables,
                )
            for _trigger, sql in triggers:
                copy.execute(sql)
            copy.execute("COMMIT")
        except BaseException:
            copy.execute("ROLLBACK")
            raise
        copy.execute("DETACH DATABASE live")
    finally:
        copy.close()


def _has_sequences(copy: sqlite3.Connection, schema: str) -> bool:
    """Whether the database `schema` has a sqlite_sequence table (some table has AUTOINCREMENT)."""
    found = copy.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE name = 'sqlite_sequence'")  # noqa: S608
    return found.fetchone() is not None


def _tables_sound(temporary: Path, tables: list[str]) -> list[str]:
    """PRAGMA integrity_check of the tables copied again (the rest was checked before the freeze)."""
    check = sqlite3.connect(f"{temporary.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems: list[str] = []
        for table in tables:
            rows = check.execute(f"PRAGMA integrity_check({written._quote(table)})").fetchall()
            problems += [row[0] for row in rows if row[0] != "ok"]
        return problems
    finally:
        check.close()


def discard(early: Early) -> None:
    """Remove an early backup that will not be used (its copy, or the finished pair)."""
    if early.temporary is not None:
        early.temporary.unlink(missing_ok=True)
    if early.manifest is not None:
        with contextlib.suppress(OSError):
            backup.manifest_path(early.target).unlink(missing_ok=True)
            early.target.unlink(missing_ok=True)
            delta_pg.remove(early.target, None)


def counts_writes(using: str) -> bool:
    """Whether deploy_safe keeps track of writes on this database: PostgreSQL, or a SQLite file."""
    return supported(using)


def start_counting(using: str) -> int:
    """Keep track of every write to each protected table from now on: SQLite's counts
    (deployguard.written), PostgreSQL's log (deployguard.written_pg). How many tables."""
    tables = fingerprints.protected_tables_now(using=using)
    if connections[using].vendor == "postgresql":
        return written_pg.install(
            connections[using], tables, lock_timeout=conf.get("DEPLOYGUARD_DRAIN_TIMEOUT")
        )
    written.install(_name(using), tables)
    return len([table for table in tables if not table.startswith("sqlite_")])


def stop_counting(using: str) -> None:
    """Stop keeping track of writes (whatever a deploy installed, if anything). A failure is
    logged, not raised: it costs writes a little, never correctness, and the next deploy or
    `deploy_safe --recover` tries again."""
    try:
        written.stop(using)
    except (DatabaseError, sqlite3.Error) as error:
        logger.warning("deploy_safe could not stop tracking writes (%s); the next deploy will", error)
