"""The operations pages' own records: their permissions, and the integrity counts they show."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Operations(models.Model):
    """No table. It holds the permissions of the operations pages in the admin, and names the
    activity chart's entry in the admin index (every entry there is a model)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_operations", "Can view the operations pages"),
            ("switch_deploy_mode", "Can switch deploy mode on and off"),
            ("restore_scrubrun", "Can restore a quarantine run"),
        ]
        verbose_name = "activity"
        verbose_name_plural = "activity"

    def __str__(self) -> str:
        return "operations"


class IntegrityRun(models.Model):
    """One count of every integrity rule's rows, kept so the operations pages need not count again.

    `counts` maps each rule id to the rows breaking it at `computed_at`; a rule registered
    since has no count until the next run.
    """

    computed_at = models.DateTimeField(default=timezone.now, db_index=True)
    computed_by = models.CharField(max_length=255, help_text="Who or what asked: an admin user, a command.")
    origin = models.CharField(max_length=255, blank=True, default="")
    duration_s = models.FloatField(default=0.0)
    counts = models.JSONField(default=dict)

    class Meta:
        ordering = ["-computed_at", "-id"]
        get_latest_by = ["computed_at", "id"]
        verbose_name = "integrity"
        verbose_name_plural = "integrity"

    def __str__(self) -> str:
        return f"integrity counts of {self.computed_at:%Y-%m-%d %H:%M:%S}"
