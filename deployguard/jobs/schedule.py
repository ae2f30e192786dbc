"""Periodic jobs under db_worker: each due job is queued exactly once, whatever the number of workers.

DEPLOYGUARD_PERIODIC_JOBS maps a task's import path to the seconds between its runs. A worker
starting up queues each one that is not queued yet, to run now; a periodic job that finishes
queues its next run, `seconds` later, in the transaction that marks it finished (so a run
that is rolled back, put back or killed queues nothing). Both look first, under a lock that
serialises them across workers (PostgreSQL: an advisory lock; SQLite: the write lock every
job transaction takes), for a run already queued: two workers never queue the same job twice.
Only workers of the site's default task backend schedule: when that is Celery, Celery beat
schedules the same jobs (CELERY_BEAT_SCHEDULE) and a db_worker of another backend schedules none.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks_db.compat import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskResultStatus
from django_tasks_db.models import DBTaskResult

from deployguard.jobs.runner import job_transaction

logger = logging.getLogger("deployguard.jobs")

SCHEDULE_LOCK_KEY = 0x6A6F_6273  # "jobs": PostgreSQL advisory lock for queuing periodic runs


def periodic_jobs(backend: str = DEFAULT_TASK_BACKEND_ALIAS) -> dict[str, float]:
    """Task path: seconds between runs, from DEPLOYGUARD_PERIODIC_JOBS, for the workers of
    `backend`: none but the default backend's."""
    if backend != DEFAULT_TASK_BACKEND_ALIAS:
        return {}
    configured = getattr(settings, "DEPLOYGUARD_PERIODIC_JOBS", {})
    return {path: float(seconds) for path, seconds in configured.items()}


def _lock(using: str) -> None:
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULE_LOCK_KEY])


def _queue_unless_queued(path: str, backend: str, *, delay: float) -> bool:
    """Queue `path` to run `delay` seconds from now unless a run is queued or running; inside a
    transaction that holds the scheduling lock. True if it queued one."""
    pending = DBTaskResult.objects.filter(
        task_path=path, backend_name=backend, status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING]
    )
    if pending.exists():
        return False
    task = import_string(path)
    if not isinstance(task, Task):
        logger.error("DEPLOYGUARD_PERIODIC_JOBS names %s, which is not a task: not scheduled", path)
        return False
    task.using(backend=backend, run_after=timezone.now() + timedelta(seconds=delay)).enqueue()
    return True


def ensure_scheduled(backend: str) -> list[str]:
    """At a worker's start: queue every periodic job not queued yet, to run now. Their paths."""
    paths = periodic_jobs(backend)
    if not paths:
        return []
    using = DBTaskResult.objects.db
    queued = []
    with job_transaction(using):
        _lock(using)
        for path in paths:
            if _queue_unless_queued(path, backend, delay=0):
                queued.append(path)
    if queued:
        logger.info("Scheduled periodic jobs: %s", ", ".join(queued))
    return queued


def after_run(row: DBTaskResult) -> bool:
    """Inside the transaction that finishes `row`: queue its next run if it is a periodic job."""
    seconds = periodic_jobs(row.backend_name).get(row.task_path)
    if seconds is None:
        return False
    _lock(row._state.db or "default")
    return _queue_unless_queued(row.task_path, row.backend_name, delay=seconds)
