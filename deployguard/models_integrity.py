"""Records of quarantine runs: which rows each run put aside, and how they were before."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone


def new_run_id() -> str:
    """A sortable, readable run id such as 20250101T101500-a1b2c3."""
    return f"{timezone.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class ScrubRun(models.Model):
    """One quarantine: by `scrub_fake_data --apply`, or by the write monitor."""

    class Kind(models.TextChoices):
        SCRUB = "scrub", "scrub_fake_data --apply"
        MONITOR = "monitor", "write monitor"
        WATCH = "watch", "integrity watch"

    id = models.CharField(primary_key=True, max_length=32, default=new_run_id, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SCRUB)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    origin = models.CharField(max_length=255, blank=True, default="")
    rule_ids = models.JSONField(default=list)
    counts = models.JSONField(default=dict)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_origin = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "quarantine run"

    def __str__(self) -> str:
        return f"quarantine run {self.id}"


class ScrubRow(models.Model):
    """A row a run quarantined, with the fields it had before (for an exact restore)."""

    run = models.ForeignKey(ScrubRun, on_delete=models.CASCADE, related_name="rows")
    model_label = models.CharField(max_length=100)
    object_pk = models.CharField(max_length=64)
    rule_ids = models.JSONField(default=list)
    prior = models.JSONField(default=dict)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["model_label", "object_pk"], name="deployguard_scrubrow_object")]

    def __str__(self) -> str:
        return f"{self.model_label} {self.object_pk} in run {self.run_id}"


class TableRowCount(models.Model):
    """The last known row count of a checked table: rows only disappear through a purge."""

    table = models.CharField(primary_key=True, max_length=100)
    rows = models.BigIntegerField()
    recorded_at = models.DateTimeField(default=timezone.now)
    origin = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        verbose_name = "table row count"

    def __str__(self) -> str:
        return f"{self.table}: {self.rows} rows at {self.recorded_at:%Y-%m-%d %H:%M}"
