"""Whether `deploy_safe --recover` may restore a killed deploy's backup: the proof that it would
undo only that deploy.

A restore puts back the data as the backup holds it and so erases whatever was written since. It
is safe only when (1) the backup is the one this deploy took (its manifest names the deploy, and
the record names the backup), and (2) nothing but the deploy itself could write since the
backup: deploy mode went on for this deploy before its backup and has stayed on, unbroken, ever
since. When either fails, recovery refuses (exit 4) and says what it found: a record planted by a
fixture, or deploy mode switched off half way, must not turn recovery into data loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deployguard import backup, state
from deployguard.deploy import undo
from deployguard.models import STATE_ROW_ID, DeployModeState, DeployRecord
from deployguard.status import DeployModeStatus

REFUSED = (
    "Refused to recover deploy {deploy_id}: {found}. Nothing was restored and deploy mode was left as it "
    "is. Check the data (`manage.py verify_integrity`); restore the backup yourself with `manage.py "
    "restore_db PATH --yes` only once you know that nothing written since must be kept."
)
NOT_ITS_BACKUP = "its backup {path} was taken by {taker}, not by this deploy"
NOT_FROZEN = "deploy mode {how}, so writes may have landed since its backup"
CHANGED_SINCE = "the data differs from the backup in {tables}"


@dataclass
class Found:
    """What recovery found that makes a restore unsafe (nothing when it is safe)."""

    problems: list[str] = field(default_factory=list)

    def refusal(self, deploy_id: str) -> str:
        return REFUSED.format(deploy_id=deploy_id, found="; ".join(self.problems)) if self.problems else ""


def check(row: DeployRecord, manifest: backup.Manifest | None, *, using: str) -> Found:
    """Whether restoring `manifest`'s backup for the killed deploy `row` would undo that deploy alone."""
    found = Found()
    if manifest is not None and manifest.deploy_id != row.deploy_id:
        taker = f"deploy {manifest.deploy_id}" if manifest.deploy_id else "backup_db, not a deploy"
        found.problems.append(NOT_ITS_BACKUP.format(path=Path(row.backup_path), taker=taker))
    broken = freeze_broken(row, using=using)
    if broken:
        found.problems.append(NOT_FROZEN.format(how=broken))
    if found.problems and manifest is not None:
        changed = undo.differences_from(manifest, using=using)
        if changed:
            found.problems.append(CHANGED_SINCE.format(tables="; ".join(changed)))
    return found


def shared_status(*, using: str) -> DeployModeStatus:
    """Deploy mode as the shared row says, read now: deploy_safe's own process is forced on
    (state.force_for_process), so state.current() would not tell."""
    row = DeployModeState.objects.using(using).filter(pk=STATE_ROW_ID).first()
    return (
        state.status_from_row(row) if row is not None else DeployModeStatus(enabled=False, source="database")
    )


def freeze_broken(row: DeployRecord, *, using: str) -> str:
    """How deploy mode failed to stay on for deploy `row` since it began, or "" when it held."""
    status = shared_status(using=using)
    switches = DeployModeState.history.using(using).filter(history_date__gte=row.started_at)
    # A change to off ("~"), not the row's creation ("+"), which the first switch on makes, off.
    off = switches.filter(enabled=False, history_type="~").order_by("history_date").first()
    if off is not None:
        who = off.changed_by or "someone"
        return f"was switched off at {off.history_date:%Y-%m-%d %H:%M:%S} by {who}"
    if not status.enabled:
        return "is off"
    if status.deploy_id != row.deploy_id:
        owner = f"deploy {status.deploy_id}" if status.deploy_id else f"{status.changed_by} ({status.reason})"
        return f"is on for {owner}, not for this deploy"
    return ""
