"""The job queue across a restore: jobs waiting when deploy_safe restores its backup stay queued.

A rolled-back deploy puts the whole database back as it was at its backup, which would drop
every job enqueued during the deploy (and bring back as waiting any job that ran since).
`kept_across_restore()` reads the jobs waiting just before the restore and writes them back
just after, as they were: nothing enqueued is lost, nothing finished runs again.
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
    """Around a restore: afterwards the queue holds the same waiting jobs as before it."""
    model = _queue_model()
    if model is None:
        yield
        return
    waiting = list(model._base_manager.using(using).filter(status="READY"))
    finished = list(model._base_manager.using(using).exclude(status="READY").values_list("pk", flat=True))
    yield
    with transaction.atomic(using=using):
        # Jobs that finished before the restore stay finished; waiting ones are written back.
        model._base_manager.using(using).filter(pk__in=finished, status="READY").delete()
        model._base_manager.using(using).filter(pk__in=[job.pk for job in waiting]).delete()
        model._base_manager.using(using).bulk_create(waiting)
    logger.warning("Kept %d waiting job(s) across the restore", len(waiting))
