"""Deployguard's job records: refused job writes, completed Celery jobs, integrity watch runs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RefusedJobWrite(models.Model):
    """A job that met the freeze and was put back: what it tried, for the deploy's report."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    task_path = models.CharField(max_length=255)
    job_id = models.CharField(max_length=64)
    worker = models.CharField(max_length=255, help_text="The worker process, as history origins name it.")
    exception = models.CharField(max_length=255)
    message = models.TextField()
    deploy_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.task_path} refused at {self.at:%Y-%m-%d %H:%M:%S}"


class CompletedJob(models.Model):
    """A Celery job that ran to completion, written in the job's own transaction: a message the
    broker delivers again (a worker killed before its acknowledgement) is not run twice."""

    job_id = models.CharField(max_length=64, unique=True)
    task_path = models.CharField(max_length=255)
    finished_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.task_path} {self.job_id}"


class IntegrityWatchRun(models.Model):
    """One run of the integrity watch: the error rules' counts and offending rows, and what was new."""

    class Status(models.TextChoices):
        CLEAN = "clean", "no violations"
        VIOLATIONS = "violations", "violations"
        FAILED = "failed", "the rules could not run"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices)
    counts = models.JSONField(default=dict, help_text="Rule id: offending rows.")
    offending = models.JSONField(default=dict, help_text="Rule id: offending primary keys (capped).")
    new = models.JSONField(default=dict, help_text="Rule id: primary keys not offending in the run before.")
    quarantine_run = models.CharField(max_length=32, blank=True, default="")
    error = models.TextField(blank=True, default="")
    origin = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"integrity watch {self.started_at:%Y-%m-%d %H:%M:%S}: {self.status}"
