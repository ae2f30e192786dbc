"""deploy_safe, step by step: the orchestrator of a deploy and of `--recover`.

A deploy: one at a time (the lock) → pre-checks → deployguard's own tables → the verified
backup and its fingerprints, while the site still writes → deploy mode on (the migrate
subprocess starts up, frozen, meanwhile) → the backup proved to hold the data at the freeze,
what was written since copied and hashed again (deployguard.deploy.backup_first) → migrate →
post-checks → deploy mode off → the record. Any failure after the freeze is undone
(deployguard.deploy.undo), and the exit status says how the run ended (deployguard.deploy.steps).

The freeze window, what the site's users wait, holds the proof, migrate and the post-checks;
not the copy or the hashing. Going off does not wait for other processes' caches: nothing the
deploy does afterwards needs them writing again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections
from django.utils import timezone

from deployguard import backup, conf, fingerprints, freeze, origin, row_counts, state, written_pg
from deployguard.delta_pg import Delta
from deployguard.deploy import backup_first, lock, migrate, postchecks, prechecks, recovery, undo
from deployguard.deploy.record import RUNNING, Record, Report, append_log, new_deploy_id, running_record
from deployguard.deploy.steps import (
    EXIT_DEPLOYED,
    EXIT_HUMAN,
    EXIT_PRECHECK,
    EXIT_RESTORED,
    FAILED,
    SKIPPED,
    Alongside,
    Output,
    Step,
    Steps,
    Stop,
)
from deployguard.exceptions import DeployModeAlreadyOn, DrainTimeout
from deployguard.fingerprint import snapshot_horizon
from deployguard.fingerprints import FingerprintsAt

logger = logging.getLogger("deployguard")

PRECHECKS_FAILED = "{count} pre-check(s) failed; nothing was touched: {failures}"
DRAIN_FAILED = "{error} Deploy mode is off again; nothing was backed up or migrated."
COUNTING_FAILED = (
    "A transaction that wrote to a protected table was still open after {timeout:g}s ({error}), so "
    "deploy_safe could not start keeping track of writes; nothing was touched. Find it (pg_stat_activity "
    "on PostgreSQL), let it end (or end it), then run deploy_safe again."
)
BACKUP_FAILED = "The backup failed ({error}); nothing was migrated."
DEPLOYED = "Deploy {deploy_id} done: migrated and verified."
ROLLED_BACK = "Deploy {deploy_id} failed and was rolled back ({how}): {why}"
NOTHING_TO_RECOVER = "No incomplete deploy to recover."
KILLED_BEFORE_BACKUP = "killed before its backup was proved at the freeze, so before migrate: nothing ran"
RECOVERED = "Recovered deploy {deploy_id}: {how}."
UNEXPECTED_BEFORE = (
    "deploy_safe stopped on an unexpected error before deploy mode went on ({error}); nothing was touched."
)
UNEXPECTED = (
    "Deploy {deploy_id} stopped on an unexpected error ({error}). Its record stays `running` and deploy mode "
    "as it is: run `manage.py deploy_safe --recover`, which restores its backup (or proves the data "
    "unchanged) once it has proved nothing else wrote since."
)
FREEZE_BROKEN = (
    "Deploy {deploy_id} stopped: deploy mode {how}, so writes may have landed that a restore would erase: "
    "nothing was restored. Deploy mode is ON again. Changed since the backup: {changes}. Check the data "
    "(`manage.py verify_integrity`), keep it or restore {path} (`manage.py restore_db PATH --yes`), then "
    "`manage.py deploy_mode off`."
)
NOT_ITS_DEPLOY_MODE = "deploy mode is not on for this deploy: left as it is"


@dataclass
class Options:
    """What the operator asked of deploy_safe."""

    check_level: str = "ERROR"
    baseline: str | None = None
    allow_dirty: bool = False
    backup_dir: Path | None = None
    allow_data_migrations: list[str] = field(default_factory=list)
    expected_minutes: float = 15.0
    verbosity: int = 1
    using: str = "default"


@dataclass(frozen=True)
class BackedUp:
    """The verified backup, and the fingerprints taken while it copied the same data."""

    path: Path
    manifest: backup.Manifest
    fingerprints: FingerprintsAt


def deploy(options: Options, output: Output) -> Report:
    """One deploy; the report says how it ended (its exit status and message)."""
    report = Report(new_deploy_id(), timezone.now(), options.using, Steps(output, options.verbosity))
    record = Record(report)
    with origin.deploy(report.deploy_id), origin.origin(f"deploy_safe {report.deploy_id}"):
        with contextlib.ExitStack() as held:  # released in reverse: the subprocess, threads, lock
            try:
                _deploy(options, report, held, record)
            except Stop as stop:
                report.exit_status, report.message = stop.exit_status, stop.message
            except Exception as error:  # a bug or the unforeseen: still a documented status and a record
                _unexpected(report, record, error)
    if report.freeze_window_s is not None:
        migrate_s = f", of which migrate {report.migrate_s:.2f}s" if report.migrate_s is not None else ""
        report.steps.say("", f"freeze window: {report.freeze_window_s:.2f}s with writes refused{migrate_s}")
    return report


def _unexpected(report: Report, record: Record, error: Exception) -> None:
    """An error no step foresaw: exit 3 when it came before the record (so before deploy mode went
    on: nothing was touched), else exit 4 with the record left `running` for --recover."""
    logger.exception("deploy_safe %s stopped on an unexpected error", report.deploy_id)
    what = f"{type(error).__name__}: {error}"
    if record.row is None:
        report.end("precheck_failed", EXIT_PRECHECK, UNEXPECTED_BEFORE.format(error=what))
        append_log(report)
        return
    message = UNEXPECTED.format(deploy_id=report.deploy_id, error=what)
    report.end(RUNNING, EXIT_HUMAN, message)
    with contextlib.suppress(DatabaseError):
        record.store(status=RUNNING, message=message)
    append_log(report)
    undo.alert(report.deploy_id, "stopped", message)


def _deploy(options: Options, report: Report, held: contextlib.ExitStack, record: Record) -> None:
    alongside = _one_at_a_time(options, report, held)
    _count_writes(options, report, held)  # from before the rules run to the deploy's end
    checked = _pre_checks(options, report, alongside)  # exit 3 unless every one passes: nothing touched
    _bootstrap(options, report)
    record.store(status="running")  # before anything is copied or frozen: a kill from here on is recoverable
    early = _back_up_first(options, report, record, earlier=checked.rules.tables)  # the site still writes
    child = _deploy_mode_on(options, report, record, held)  # the migrate subprocess starts up, frozen
    _still_frozen(report, record, None)  # at each step: else exit 4, nothing restored over writes since
    backed_up = _backed_up_at_freeze(options, report, record, early, earlier=checked.rules.tables)
    _still_frozen(report, record, backed_up)
    migrated = _migrate(options, report, child)
    _still_frozen(report, record, backed_up)
    problem = migrated.problem or _post_checks(options, report, alongside, checked, backed_up, migrated)
    _still_frozen(report, record, backed_up)
    if problem:
        _roll_back(report, record, backed_up, why=problem)  # exit 1, or 4 when a person must act
    with report.steps.step("deploy mode off") as step:
        step.detail = _deploy_mode_off(report, f"deploy_safe {report.deploy_id} done")
    row_counts.record()  # the verified data's row counts: verify_integrity reports rows lost after this
    record.finish("succeeded", EXIT_DEPLOYED, DEPLOYED.format(deploy_id=report.deploy_id))


def _one_at_a_time(options: Options, report: Report, held: contextlib.ExitStack) -> Alongside:
    """Take the deploy lock (or stop, naming who holds it); then the threads for work alongside."""
    deploy_lock = lock.DeployLock(options.using)
    held.callback(deploy_lock.release)
    with report.steps.step("pre-check: one deploy at a time"):
        lock.take(deploy_lock, deploy_id=report.deploy_id, actor=state.os_actor())
    alongside = Alongside(options.using)
    held.callback(alongside.shutdown)
    return alongside


def _count_writes(options: Options, report: Report, held: contextlib.ExitStack) -> None:
    """Keep track of every write to each protected table until the deploy ends (SQLite's counts,
    deployguard.written; PostgreSQL's log, deployguard.written_pg), from which the backup is
    proved at the freeze and the post-checks prove tables unwritten without reading them (and,
    on SQLite, reuse the pre-check's rules). Exit 3 when it cannot start: nothing touched."""
    if not backup_first.counts_writes(options.using):
        return
    held.callback(backup_first.stop_counting, options.using)  # whatever the deploy's end
    with report.steps.step("pre-check: count writes") as step:
        try:
            step.detail = {"tables": backup_first.start_counting(options.using)}
        except (sqlite3.Error, DatabaseError) as error:
            step.status = FAILED
            timeout = float(conf.get("DEPLOYGUARD_DRAIN_TIMEOUT"))
            message = COUNTING_FAILED.format(timeout=timeout, error=str(error).strip())
            report.end("precheck_failed", EXIT_PRECHECK, message)
            append_log(report)
            raise Stop(EXIT_PRECHECK, message) from None


def _pre_checks(options: Options, report: Report, alongside: Alongside) -> prechecks.PreChecked:
    checked = prechecks.run(
        report.steps, alongside, using=options.using, backup_dir=_backup_dir(options),
        allow_dirty=options.allow_dirty, check_level=options.check_level,
        allow_data_migrations=options.allow_data_migrations, baseline=options.baseline,
    )  # fmt: skip
    if checked.failures:
        failures = " | ".join(checked.failures)
        message = PRECHECKS_FAILED.format(count=len(checked.failures), failures=failures)
        report.end("precheck_failed", EXIT_PRECHECK, message)
        append_log(report)
        raise Stop(EXIT_PRECHECK, message)
    return checked


def _backup_dir(options: Options) -> Path:
    return options.backup_dir or backup.default_backup_dir()


def _bootstrap(options: Options, report: Report) -> None:
    """Create deployguard's tables when this release brings them: the switch and the record live there."""
    pending = migrate.pending_migrations(using=options.using, app="deployguard")
    if not pending:
        return
    with report.steps.step("bootstrap deployguard's tables") as step:
        step.detail = {"migrations": pending}
        problem = migrate.bootstrap(deploy_id=report.deploy_id, verbosity=options.verbosity)
        if problem:
            step.status = FAILED
            raise Stop(EXIT_PRECHECK, problem)
        step.detail["applied"] = pending


def _deploy_mode_on(
    options: Options, report: Report, record: Record, held: contextlib.ExitStack
) -> migrate.Child:
    """Deploy mode on (state.switch_on(), with the migrate subprocess started between the switch
    and the wait); returns the subprocess, starting up frozen."""
    with report.steps.step("deploy mode on") as step:
        report.frozen()
        status = state.enable(
            reason=f"deploy_safe {report.deploy_id}", changed_by=state.os_actor(), deploy_id=report.deploy_id,
            expected_minutes=options.expected_minutes,
        )  # fmt: skip
        child = migrate.start(
            deploy_id=report.deploy_id, using=options.using, verbosity=options.verbosity,
            allow_data_migrations=options.allow_data_migrations,
        )  # fmt: skip
        held.callback(migrate.discard, child)
        # PostgreSQL and SQLite: the drain enables the database's own freeze, after which no
        # client can write whatever it has cached, so other processes' caches need no waiting for.
        waited = 0.0 if freeze.supported(connections[options.using]) else state.wait_for_propagation()
        try:
            drained = state.drain_in_flight_writes()
        except DrainTimeout as error:
            step.status, step.detail = FAILED, str(error)
            _deploy_mode_off(report, f"deploy_safe {report.deploy_id} aborted")
            record.finish("rolled_back", EXIT_PRECHECK, DRAIN_FAILED.format(error=error))
            raise Stop(EXIT_PRECHECK, report.message) from None
        step.detail = {"expected_end": status.expected_end, "waited": waited, "drain": drained}
        record.store(status="running")
    return child


def _back_up_first(
    options: Options, report: Report, record: Record, *, earlier: FingerprintsAt | None
) -> backup_first.Early | None:
    """The backup and its fingerprints, taken before deploy mode goes on, while the site still
    writes (deployguard.deploy.backup_first); None when the database cannot prove them at the
    freeze (in-memory SQLite): then both are taken under the freeze."""
    using = options.using
    if not backup_first.supported(using):
        return None
    try:
        with report.steps.step("backup, before the freeze") as step:
            target = backup.default_backup_path(using, _backup_dir(options))
            early = backup_first.take(target, using=using, deploy_id=report.deploy_id, earlier=earlier)
            tables = early.fingerprints.tables
            step.detail = {
                "path": str(target), "tables": len(tables), "rows": sum(fp.count for fp in tables.values()),
                "while": "the site still writes",
            }  # fmt: skip
            if earlier is not None:
                reused = earlier.reused_in(tables)
                step.detail["reused_from_pre_check"] = len(reused)
                step.detail["hashed"] = sorted(set(tables) - set(reused))
    except (backup.BackupError, DatabaseError, OSError, sqlite3.Error) as error:
        # Nothing was frozen or migrated: the data is as it was.
        record.finish("rolled_back", EXIT_RESTORED, BACKUP_FAILED.format(error=error))
        raise Stop(EXIT_RESTORED, report.message) from None
    return early


def _backed_up_at_freeze(
    options: Options,
    report: Report,
    record: Record,
    early: backup_first.Early | None,
    *,
    earlier: FingerprintsAt | None,
) -> BackedUp:
    """Under the freeze: the early backup proved to hold the data now, the tables written since
    it copied again; or, when it cannot be (none taken, or a table redefined since), the whole
    backup taken now."""
    if early is None:
        return _back_up(options, report, record, earlier=earlier)
    try:
        with report.steps.step("backup proved at the freeze") as step:
            proved = backup_first.prove(early)
            step.detail = (
                {"copied_again": "everything, under the freeze: a table was redefined since the copy"}
                if proved is None
                else {
                    "path": str(proved.path), "written_since_the_copy": proved.written_since,
                    "copied_again": proved.copied_again,
                }
            )  # fmt: skip
            if proved is not None and (delta := Delta.of(proved.manifest.extra)) is not None:
                step.detail["delta"] = {"path": str(delta.path(proved.path)), "tables": delta.tables}
    except (backup.BackupError, DatabaseError, OSError, sqlite3.Error) as error:
        backup_first.discard(early)
        _deploy_mode_off(report, f"deploy_safe {report.deploy_id} aborted")
        record.finish("rolled_back", EXIT_RESTORED, BACKUP_FAILED.format(error=error))
        raise Stop(EXIT_RESTORED, report.message) from None
    if proved is None:
        backup_first.stop_counting(options.using)  # so that the whole copy does not carry the triggers
        return _back_up(options, report, record, earlier=earlier)
    report.backup = proved.path
    record.store(status="running")
    return BackedUp(proved.path, proved.manifest, proved.fingerprints)


def _back_up(options: Options, report: Report, record: Record, *, earlier: FingerprintsAt | None) -> BackedUp:
    """The verified backup; the fingerprints and applied migrations taken while it copies the
    same data (same lock or snapshot) are a step of their own, listed before the backup's."""
    using = options.using
    try:
        with report.steps.step("backup") as step:
            path = backup.default_backup_path(using, _backup_dir(options))
            with backup.copying(path, using=using, deploy_id=report.deploy_id) as copy:
                frozen = _fingerprint(report.steps, before=step, using=using, earlier=earlier)
                copy.describe(fingerprints.digests(frozen.tables), backup.applied_migrations(using))
            assert copy.manifest is not None
            report.backup = copy.path
            step.detail = {"path": str(copy.path), "size": copy.manifest.size}
            record.store(status="running")
    except (backup.BackupError, DatabaseError, OSError) as error:
        # Nothing was migrated: the data is as it was. Unfreeze and stop.
        _deploy_mode_off(report, f"deploy_safe {report.deploy_id} aborted")
        record.finish("rolled_back", EXIT_RESTORED, BACKUP_FAILED.format(error=error))
        raise Stop(EXIT_RESTORED, report.message) from None
    return BackedUp(copy.path, copy.manifest, frozen)


def _fingerprint(steps: Steps, *, before: Step, using: str, earlier: FingerprintsAt | None) -> FingerprintsAt:
    """Every protected table's fingerprint, the post-check's reference; on PostgreSQL with the
    snapshot's horizon, since which the post-check proves tables unwritten."""
    with steps.step("fingerprint", before=before) as step:
        tables = fingerprints.take(using=using, earlier=earlier)
        postgresql = connections[using].vendor == "postgresql"
        horizon = snapshot_horizon(using=using) if postgresql else None
        snapshot = None
        if postgresql:  # the write log (deployguard.written_pg) proves tables unwritten after it
            with connections[using].cursor() as cursor:
                snapshot = written_pg.snapshot(cursor)
        step.detail = {
            "tables": len(tables),
            "rows": sum(fp.count for fp in tables.values()),
            "while": "the backup copies the same data",
        }
        if earlier is not None:
            reused = earlier.reused_in(tables)
            step.detail["reused_from_pre_check"] = len(reused)
            step.detail["hashed"] = sorted(set(tables) - set(reused))
    return FingerprintsAt(tables, horizon, snapshot=snapshot)


def _migrate(options: Options, report: Report, child: migrate.Child) -> migrate.Migrated:
    """Tell the migrate subprocess to go; what it did, and why the deploy fails (or "")."""
    with report.steps.step("migrate") as step:
        migrated = migrate.go(
            child, using=options.using, verbosity=options.verbosity, output=report.steps.output
        )
        step.detail = migrated.detail
        if migrated.problem:
            step.status = FAILED
    report.blocked_writes, report.data_migration_changes = migrated.writers, migrated.data_changes
    return migrated


def _post_checks(
    options: Options,
    report: Report,
    alongside: Alongside,
    checked: prechecks.PreChecked,
    backed_up: BackedUp,
    migrated: migrate.Migrated,
) -> str:
    """The data after migrate against the data at the freeze; why the deploy fails, or "".
    Tables a named data migration changed are reported (in the migrate step), not compared."""
    changed_by_data_migrations = {table for changes in migrated.data_changes.values() for table in changes}
    verified = postchecks.run(
        report.steps, alongside, using=options.using, frozen=backed_up.fingerprints,
        skip=changed_by_data_migrations, before=checked.rules, applied=migrated.recordable,
        baseline=options.baseline, baseline_after_migrate=checked.baseline_after_migrate,
        backup_path=backed_up.path,
    )  # fmt: skip
    report.schema_changes = verified.schema_changes
    return verified.problem


def _still_frozen(report: Report, record: Record, backed_up: BackedUp | None) -> None:
    """Stop the deploy (exit 4) when deploy mode did not stay on for it: writes may have landed
    since, which a restore would erase, so nothing is restored. Deploy mode goes back on (for
    this deploy, when it is off) and the report says who switched it off, when, and what changed."""
    if record.row is None:
        return
    broken = recovery.freeze_broken(record.row, using=report.using)
    if not broken:
        return
    with report.steps.step("deploy mode held") as step:
        step.status = FAILED
        if not recovery.shared_status(using=report.using).enabled:
            with contextlib.suppress(DeployModeAlreadyOn):
                state.enable(
                    reason=f"deploy_safe {report.deploy_id}: deploy mode was switched off mid-deploy",
                    changed_by=state.os_actor(), deploy_id=report.deploy_id,
                )  # fmt: skip
        changes = undo.differences_from(backed_up.manifest, using=report.using) if backed_up else []
        step.detail = {"deploy_mode": broken, "changed_since_backup": changes}
    message = FREEZE_BROKEN.format(
        deploy_id=report.deploy_id, how=broken, path=backed_up.path if backed_up else "(none taken yet)",
        changes="; ".join(changes) or "nothing in the protected tables",
    )  # fmt: skip
    record.finish("restore_failed", EXIT_HUMAN, message)
    undo.alert(report.deploy_id, "restore_failed", message)
    raise Stop(EXIT_HUMAN, message)


def _roll_back(report: Report, record: Record, backed_up: BackedUp, *, why: str) -> None:
    """Undo a failed deploy and stop: exit 1 when the data is proved as before, 4 when not."""
    deploy_id = report.deploy_id
    report.note_job_writers()  # before a restore takes their records away
    with report.steps.step("roll back") as step:
        try:
            step.detail = undo.restore_or_prove_unchanged(
                backed_up.path,
                backed_up.manifest,
                using=report.using,
                reason=f"deploy_safe {deploy_id} rollback",
            )
        except undo.FAILURES as error:
            step.status, step.detail = FAILED, {"error": str(error)}
            message = undo.human_must_act(deploy_id=deploy_id, why=why, path=backed_up.path, error=error)
            record.finish("restore_failed", EXIT_HUMAN, message)
            undo.alert(deploy_id, "restore_failed", message)
            raise Stop(EXIT_HUMAN, message) from None
    record.survive_restore()
    with report.steps.step("deploy mode off") as off:
        off.detail = _deploy_mode_off(report, f"deploy_safe {deploy_id} rolled back")
    how = step.detail if isinstance(step.detail, str) else f"restored from {backed_up.path}"
    message = ROLLED_BACK.format(deploy_id=deploy_id, how=how, why=why)
    record.finish("rolled_back", EXIT_RESTORED, message)
    undo.alert(deploy_id, "rolled_back", message)
    raise Stop(EXIT_RESTORED, message)


def _deploy_mode_off(report: Report, reason: str) -> dict[str, Any]:
    """Deploy mode off, without waiting for other processes' cached state to expire.

    Going on must wait: the fingerprints are only true once nobody can write. Going off
    need not: nothing deploy_safe does afterwards depends on other processes writing
    again, and each of them sees "off" within DEPLOYGUARD_STATE_CACHE_SECONDS anyway.
    """
    state.disable(changed_by=state.os_actor(), reason=reason)
    report.thawed()
    return {"waited_for_other_processes": False, "they_write_again_within": conf.propagation_delay()}


def recover(options: Options, output: Output) -> Report:
    """Finish a deploy whose process was killed: restore or prove unchanged, then deploy mode off."""
    report = Report(new_deploy_id(), timezone.now(), options.using, Steps(output, options.verbosity))
    deploy_lock = lock.DeployLock(options.using)
    with origin.origin("deploy_safe --recover"):
        try:
            _recover(report, deploy_lock, backup_dir=_backup_dir(options))
        except Stop as stop:
            report.exit_status, report.message = stop.exit_status, stop.message
        finally:
            deploy_lock.release()
    return report


def _recover(report: Report, deploy_lock: lock.DeployLock, *, backup_dir: Path) -> None:
    steps, using = report.steps, report.using
    with steps.step("one deploy at a time"):
        lock.take(deploy_lock, deploy_id=report.deploy_id, actor=state.os_actor())
    row = running_record(using=using)
    if row is None:
        report.message = NOTHING_TO_RECOVER
        return
    report.deploy_id, report.started_at = row.deploy_id, row.started_at
    steps.put_first([Step(**taken) for taken in row.report.get("steps", [])])
    record = Record(report, row)
    with steps.step("recover") as step:
        try:
            if row.backup_path:
                report.backup = Path(row.backup_path)
                manifest = backup.check_backup(report.backup, using=using)
                _refuse_unless_safe(record, step, recovery.check(row, manifest, using=using))
                step.detail = undo.restore_or_prove_unchanged(
                    report.backup, manifest, using=using, reason="deploy_safe --recover"
                )
            else:
                step.detail = KILLED_BEFORE_BACKUP
        except undo.FAILURES as error:
            step.status = FAILED
            message = undo.human_must_act(
                deploy_id=report.deploy_id, why="killed mid-deploy", path=report.backup, error=error
            )
            record.finish("restore_failed", EXIT_HUMAN, message)
            undo.alert(report.deploy_id, "restore_failed", message)  # a person must act: never silent
            raise Stop(EXIT_HUMAN, message) from None
    record.survive_restore()
    backup_first.stop_counting(using)  # the write tracking the killed deploy left
    backup_first.discard_leftovers(backup_dir, report.deploy_id)  # its unproved copy
    with steps.step("deploy mode off") as off:
        if recovery.shared_status(using=using).deploy_id == report.deploy_id:
            off.detail = _deploy_mode_off(report, f"deploy_safe --recover {report.deploy_id}")
        else:  # never on for it (killed before), or someone else's since: not this run's to end
            off.status, off.detail = SKIPPED, NOT_ITS_DEPLOY_MODE
    record.finish("recovered", EXIT_DEPLOYED, RECOVERED.format(deploy_id=report.deploy_id, how=step.detail))


def _refuse_unless_safe(record: Record, step: Step, found: recovery.Found) -> None:
    """Stop --recover (exit 4), restoring nothing, when recovery found the restore unsafe."""
    refusal = found.refusal(record.report.deploy_id)
    if not refusal:
        return
    step.status, step.detail = FAILED, {"found": found.problems}
    record.finish("restore_failed", EXIT_HUMAN, refusal)
    undo.alert(record.report.deploy_id, "restore_failed", refusal)
    raise Stop(EXIT_HUMAN, refusal)
