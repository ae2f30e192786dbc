"""A deploy's account of itself: its report, its DeployRecord row, and its line in the deploy log.

The report is what `--report FILE` writes and what the row keeps; the row is saved as the deploy
goes (`running` until it ends) so that a deploy killed half way is found by the next one and by
`deploy_safe --recover`; the log gets one JSON line when the deploy ends.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from deployguard import state
from deployguard.allowances import own_records
from deployguard.deploy.steps import EXIT_DEPLOYED, Steps
from deployguard.jobs.runner import refused_writes
from deployguard.models import DeployRecord

RUNNING = DeployRecord.Status.RUNNING
LOG_LEFT_OUT = ("steps", "blocked_writes", "data_migration_changes")
"""The report's parts too long for the deploy log's one line."""


def new_deploy_id() -> str:
    return f"{timezone.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


@dataclass
class Report:
    """What a run reports: the keys of `--report FILE`, DeployRecord.report and the log line."""

    deploy_id: str
    started_at: datetime
    using: str
    steps: Steps
    status: str = RUNNING
    exit_status: int = EXIT_DEPLOYED
    message: str = ""
    backup: Path | None = None
    blocked_writes: list[dict[str, str]] = field(default_factory=list)
    data_migration_changes: dict[str, Any] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)
    # Jobs that met the freeze since the deploy began (deployguard.jobs), kept in memory so that
    # a restore, which takes their records away, leaves them in the report.
    job_writers: list[dict[str, str]] = field(default_factory=list)
    # The freeze window: from just before deploy mode went on to just after it went off
    # (time.perf_counter()); what the site's users wait, whatever the steps inside it.
    froze_at: float | None = None
    thawed_at: float | None = None

    def frozen(self) -> None:
        self.froze_at = time.perf_counter()

    def thawed(self) -> None:
        if self.froze_at is not None:
            self.thawed_at = time.perf_counter()

    @property
    def freeze_window_s(self) -> float | None:
        """Seconds writes were refused: so far while deploy mode is on; None before it went on."""
        if self.froze_at is None:
            return None
        return round((self.thawed_at or time.perf_counter()) - self.froze_at, 3)

    @property
    def migrate_s(self) -> float | None:
        return next((step.seconds for step in self.steps.taken if step.name == "migrate"), None)

    def note_job_writers(self) -> list[dict[str, str]]:
        """Read the jobs that met the freeze so far; the longest list read is the one kept."""
        with contextlib.suppress(DatabaseError):
            found = refused_writes(since=self.started_at, using=self.using)
            if len(found) >= len(self.job_writers):
                self.job_writers = found
        return self.job_writers

    def end(self, status: str, exit_status: int, message: str) -> None:
        self.status, self.exit_status, self.message = status, exit_status, message

    def as_dict(self) -> dict[str, Any]:
        connection = connections[self.using]
        return {
            "deploy_id": self.deploy_id,
            "status": self.status,
            "exit_status": self.exit_status,
            "message": self.message,
            "started_at": self.started_at.isoformat(),
            "finished_at": timezone.now().isoformat(),
            "database": str(connection.settings_dict["NAME"]),
            "engine": connection.vendor,
            "backup": str(self.backup) if self.backup else None,
            "steps": self.steps.as_dicts(),
            "blocked_writes": self.blocked_writes + self.job_writers,
            "data_migration_changes": self.data_migration_changes,
            "schema_changes": self.schema_changes,
            "freeze_window_s": self.freeze_window_s,
            "migrate_s": self.migrate_s,
        }


def deploy_log_path() -> Path:
    return Path(getattr(settings, "DEPLOYGUARD_DEPLOY_LOG", Path(settings.BASE_DIR) / "var" / "deploys.log"))


def append_log(report: Report) -> None:
    """One JSON line for the run in the deploy log (DEPLOYGUARD_DEPLOY_LOG); a log that cannot
    be written is said, and does not change how the run ends."""
    path = deploy_log_path()
    line = {key: value for key, value in report.as_dict().items() if key not in LOG_LEFT_OUT}
    line["seconds"] = report.steps.seconds()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(line, default=str) + "\n")
    except OSError as error:
        report.steps.output("ERROR", f"Could not append to the deploy log {path}: {error.strerror or error}")


def table_exists(*, using: str = "default") -> bool:
    """Whether DeployRecord's table exists yet (deploy_safe creates it on its first run)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        return DeployRecord._meta.db_table in connection.introspection.table_names(cursor)


def running_record(*, using: str = "default") -> DeployRecord | None:
    """The deploy that started and never ended (its process was killed), if any."""
    if not table_exists(using=using):
        return None
    return DeployRecord.objects.using(using).filter(status=RUNNING).first()


class Record:
    """One run's DeployRecord row: created at its first save once the table exists, saved with
    the report as the run goes, and kept across a restore that puts back an older copy of it."""

    def __init__(self, report: Report, row: DeployRecord | None = None) -> None:
        self.report = report
        self.row = row

    def store(self, **fields: Any) -> None:
        using = self.report.using
        if self.row is None:
            if not table_exists(using=using):
                return
            self.row = DeployRecord(
                deploy_id=self.report.deploy_id,
                started_by=state.os_actor(),
                started_at=self.report.started_at,
            )
        for name, value in fields.items():
            setattr(self.row, name, value)
        self.row.backup_path = str(self.report.backup or "")
        self.report.note_job_writers()
        self.row.report = json.loads(json.dumps(self.report.as_dict(), default=str))
        self.row._change_reason = f"deploy_safe: {self.row.status}"  # type: ignore[attr-defined]
        with own_records("deploy_safe's deploy record"):
            self.row.save(using=using)

    def finish(self, status: str, exit_status: int, message: str) -> None:
        """End the run: the report, the row (when the database takes it) and the log line."""
        self.report.end(status, exit_status, message)
        with contextlib.suppress(DatabaseError):
            self.store(status=status, finished_at=timezone.now(), exit_status=exit_status, message=message)
        append_log(self.report)

    def survive_restore(self) -> None:
        """A restore put back the backup's copy of the row (or none): the next save writes this
        run's over it, or inserts it again."""
        if self.row is not None:
            self.row._state.adding = False
