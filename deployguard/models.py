"""Deployguard's own tables: the shared deploy-mode switch, with its history."""

from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords

from deployguard.origin import OriginHistoricalModel

STATE_ROW_ID = 1


class DeployModeState(models.Model):
    """The one row (pk=1) every process and host reads to know whether deploy mode is on.

    No row means deploy mode has never been turned on on this database: off.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=STATE_ROW_ID, editable=False)
    enabled = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    changed_by = models.CharField(
        max_length=255, blank=True, default="", help_text="User, or OS user and host, who last switched it."
    )
    since = models.DateTimeField(null=True, blank=True, help_text="When deploy mode was last turned on.")
    deploy_id = models.CharField(max_length=64, blank=True, default="")
    expected_end = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(
        bases=[OriginHistoricalModel], history_change_reason_field=models.TextField(null=True)
    )

    class Meta:
        verbose_name = "deploy mode"
        verbose_name_plural = "deploy mode"
        constraints = [
            models.CheckConstraint(condition=models.Q(id=STATE_ROW_ID), name="deploymodestate_single_row")
        ]

    def __str__(self) -> str:
        return f"deploy mode {'on' if self.enabled else 'off'}"


class DeployRecord(models.Model):
    """One `deploy_safe` run: what it did, where its backup is, and how it ended.

    Saved as `running` before anything is changed, so that a deploy killed half way is
    found by the next one (and by `deploy_safe --recover`).
    """

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "deployed and verified"
        ROLLED_BACK = "rolled_back", "failed; data restored (or proved unchanged) and verified"
        RESTORE_FAILED = "restore_failed", "failed; restore failed or unverified: a person must act"
        RECOVERED = "recovered", "killed; recovered by deploy_safe --recover"

    deploy_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_by = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_status = models.SmallIntegerField(null=True, blank=True)
    backup_path = models.CharField(max_length=1024, blank=True, default="")
    message = models.TextField(blank=True, default="")
    report = models.JSONField(default=dict, blank=True)

    history = HistoricalRecords(
        bases=[OriginHistoricalModel], history_change_reason_field=models.TextField(null=True)
    )

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "deploy"

    def __str__(self) -> str:
        return f"deploy {self.deploy_id} ({self.status})"


# Integrity and the operations pages keep their own models in modules of their own; they are
# deployguard's tables too.
from deployguard.models_integrity import ScrubRow, ScrubRun, TableRowCount  # noqa: E402

# So do the job records (deployguard.jobs).
from deployguard.models_jobs import CompletedJob, IntegrityWatchRun, RefusedJobWrite  # noqa: E402
from deployguard.models_operations import IntegrityRun, Operations  # noqa: E402

__all__ = [
    "CompletedJob",
    "DeployModeState",
    "DeployRecord",
    "IntegrityRun",
    "IntegrityWatchRun",
    "Operations",
    "RefusedJobWrite",
    "ScrubRow",
    "ScrubRun",
    "TableRowCount",
]
