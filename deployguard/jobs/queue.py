"""The job queue across a restore: jobs waiting when deploy_safe restores its backup stay queued.

A rolled-back deploy puts the whole database back as it was at its backup, which would drop
every job enqueued during the deploy (and bring back as waiting any job that ran since).
`kept_across_restore()` reads the whole queue just before the restore and writes it back just
after, every job as it was: nothing enqueued is lost, nothing finished runs again or loses its
result, nothing running is taken from its worker. (Until 2026-12-02 only the waiting jobs were
written back, and a job that had been waiting in the backup and had run since was deleted:
since deploy_safe takes its backup before the freeze, a job claimed between the two lost its
row, and its worker's result with it; the jobs reliability test found it.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import apps
from django.db import transaction

logger = logging.getLogger("deployguard.jobs")


def _queue_model() -> type | None:
    if not apps.is_installed("django_tasks_db"):
        return None
    return apps.get_model("django_tasks_database", "DBTaskResult")


@contextmanager
def kept_across_restore(using: str = "default") -> Iterator[None]:
    """Around a restore: afterwards the queue holds every job as it was just before it."""
    model = _queue_model()
    if model is None:
        yield
        return
    jobs = list(model._base_manager.using(using).all())
    yield
    with transaction.atomic(using=using):
        model._base_manager.using(using).all().delete()
        model._base_manager.using(using).bulk_create(jobs)
    waiting = sum(1 for job in jobs if job.status == "READY")
    logger.warning("Kept the job queue across the restore: %d job(s), %d waiting", len(jobs), waiting)
