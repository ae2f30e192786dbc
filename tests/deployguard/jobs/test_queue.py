"""The job queue across a restore (deployguard.jobs.queue): every job comes back as it was."""

from __future__ import annotations

import uuid

from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from deployguard.allowances import allow_writes
from deployguard.jobs.queue import kept_across_restore


def _job(status: str, **fields) -> DBTaskResult:
    return DBTaskResult.objects.create(
        status=status, args_kwargs={"args": [], "kwargs": {}}, task_path="tests.jobs.nothing",
        backend_name="database", queue_name="default", run_after=timezone.now(), **fields,
    )  # fmt: skip


def _queue() -> dict[uuid.UUID, tuple[str, object]]:
    return {job.pk: (job.status, job.return_value) for job in DBTaskResult.objects.all()}


def test_every_job_comes_back_as_it_was_just_before_the_restore(db):
    waiting = _job("READY")
    running = _job("RUNNING", started_at=timezone.now())
    done = _job("SUCCESSFUL", finished_at=timezone.now(), return_value=7)
    failed = _job("FAILED", finished_at=timezone.now())
    before = _queue()

    with allow_writes("test"), kept_across_restore():
        # What a backup taken earlier brings back: the job that ran since (claimed between the
        # backup and the freeze) waiting again, another not yet queued, one since deleted.
        DBTaskResult.objects.filter(pk__in=[done.pk, running.pk]).update(status="READY", return_value=None)
        DBTaskResult.objects.filter(pk__in=[waiting.pk, failed.pk]).delete()
        _job("READY")  # pruned since the backup

    assert _queue() == before
    assert DBTaskResult.objects.get(pk=done.pk).return_value == 7
