"""Undoing a deploy: prove the data unchanged since its backup, or restore the backup and prove
that; when neither works, the message that tells a person what to do (exit 4).

Rolling back a failed deploy and `deploy_safe --recover` after a killed one both come here.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from django.core.mail import mail_admins
from django.db import DatabaseError

from deployguard import backup, fingerprints, state
from deployguard.jobs import queue as job_queue

PROVED_UNCHANGED = "proved unchanged: fingerprints and applied migrations equal the backup's"
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
FAILURES = (backup.RestoreUnverified, backup.RestoreRefused, DatabaseError, OSError)
"""What restore_or_prove_unchanged() raises when the data could be neither proved unchanged nor
restored and verified."""


def differences_from(manifest: backup.Manifest, *, using: str = "default") -> list[str]:
    """How the data now differs from the backup's: fingerprints and applied migrations."""
    differences = fingerprints.differences(manifest.fingerprints, fingerprints.current_digests(using=using))
    if backup.applied_migrations(using) != manifest.migrations:
        differences.append("applied migrations differ")
    return differences


def restore_or_prove_unchanged(
    path: Path, manifest: backup.Manifest, *, using: str = "default", reason: str
) -> str | dict[str, Any]:
    """Prove the data unchanged since the backup at `path`, or restore it and prove that.
    Returns what was done; raises one of FAILURES when neither could be proved."""
    differences = differences_from(manifest, using=using)
    if not differences:
        return PROVED_UNCHANGED
    with job_queue.kept_across_restore(using):  # jobs waiting in the queue are not the deploy's to undo
        backup.restore_database(path, using=using, reason=reason)
    state.clear_cache()
    if left := differences_from(manifest, using=using):
        raise backup.RestoreUnverified("; ".join(left))
    return {"restored_because": differences}


def human_must_act(*, deploy_id: str, why: str, path: Any, error: Exception) -> str:
    """The exit-4 message: what failed and which command gets the operator out."""
    if isinstance(error, backup.RestoreRefused):  # refused before anything was restored
        return BACKUP_UNUSABLE.format(
            deploy_id=deploy_id, why=why, path=path, error=error, directory=Path(str(path)).parent
        )
    return HUMAN_MUST_ACT.format(
        deploy_id=deploy_id, why=why, path=path, how=f"failed or is unverified ({error})"
    )


def alert(deploy_id: str, status: str, message: str) -> None:
    """Mail the admins how the deploy ended; a mail that cannot go changes nothing."""
    with contextlib.suppress(Exception):
        mail_admins(f"deploy_safe {deploy_id}: {status}", message, fail_silently=True)
