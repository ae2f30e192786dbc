"""System checks for deploy-aware jobs: the job queue stays writable in deploy mode."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core import checks

from deployguard import guard

QUEUE_PROTECTED = (
    "The job queue table {table} is protected: during a deploy nothing could be enqueued, and "
    "workers could not put back jobs that meet the freeze."
)


def queue_tables() -> list[str]:
    """The tables job queues live in: django-tasks-db's, when it is installed."""
    if not apps.is_installed("django_tasks_db"):
        return []
    return [apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table]


def check_queue_writable(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            QUEUE_PROTECTED.format(table=table),
            hint=f"Add {table!r} to DEPLOYGUARD_WRITABLE_TABLES: queued jobs are not site data.",
            id="deployguard.E010",
        )
        for table in queue_tables()
        if guard.is_protected(table)
    ]


def register() -> None:
    checks.register(check_queue_writable, "deployguard")
