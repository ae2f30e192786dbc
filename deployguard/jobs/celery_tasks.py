"""The Celery side: one task that runs any Django task deploy-aware, and workers started frozen.

A Celery job is held in the worker while deploy mode is on (its message stays unacknowledged,
the rest stay queued in order behind it) and runs in one transaction, put back and run again
after the deploy when it meets the freeze. Its completion is recorded in that transaction
(CompletedJob), so a message delivered twice (a worker killed after the job committed but before
acknowledging it, or held past the broker's visibility timeout) does not run it twice. A worker
whose process is frozen for good (DEPLOYMENT_MODE=true) consumes nothing at all.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task as CeleryTask
from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_ready
from celery.worker import state as worker_state
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string
from django_tasks.base import Task

from deployguard import state
from deployguard.jobs import gate, runner
from deployguard.jobs.celery_backend import RUN_JOB
from deployguard.models_jobs import CompletedJob

logger = logging.getLogger("deployguard.jobs")

STARTED_FROZEN = (
    "This worker started with deploy mode forced on ({how}): it consumes no jobs. Restart it without."
)


def resolve(task_path: str) -> Task:
    """The Django task at `task_path`; SuspiciousOperation for anything else (a message is input)."""
    task = import_string(task_path)
    if not isinstance(task, Task):
        raise SuspiciousOperation(f"{task_path} is not a Django task: refusing to run it.")
    return task


def _run_once(
    task: Task, task_path: str, job_id: str, args: list[Any], kwargs: dict[str, Any]
) -> runner.Outcome:
    """One attempt, in one transaction; `done` without running when it completed before."""
    with runner.job_transaction("default"):
        if CompletedJob.objects.filter(job_id=job_id).exists():
            logger.warning(
                "Job %s (%s) was delivered again after it completed: not run twice.", task_path, job_id
            )
            return runner.Outcome("done")
        outcome = runner.run(lambda: task.call(*args, **kwargs), label=f"job:{task_path} id={job_id}")
        if outcome.kind == "held":
            transaction.set_rollback(True)
        elif outcome.kind == "done":
            CompletedJob.objects.create(job_id=job_id, task_path=task_path[:255])
    return outcome


def _worker_running() -> bool:
    # Celery sets these to the exit status on a warm or cold shutdown, 0 included (so: `is`).
    return all(
        flag is None or flag is False for flag in (worker_state.should_stop, worker_state.should_terminate)
    )


@shared_task(bind=True, name=RUN_JOB, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(
    self: CeleryTask, task_path: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
) -> Any:
    """Run the Django task at `task_path` once deploy mode is off; again after the deploy if it meets
    the freeze."""
    task = resolve(task_path)
    job_id = str(self.request.id)
    while True:
        frozen = gate.closed()
        if frozen is not None:
            if not gate.hold(frozen, keep_waiting=_worker_running):
                # The worker is stopping: the message goes back to the queue, not acknowledged.
                raise Reject(f"{task_path} held by a worker that is stopping", requeue=True)
            continue
        try:
            outcome = _run_once(task, task_path, job_id, args or [], kwargs or {})
        except IntegrityError:  # another delivery of this message completed it meanwhile
            logger.warning(
                "Job %s (%s) completed in another worker meanwhile: not run twice.", task_path, job_id
            )
            return None
        if outcome.kind == "held":
            runner.record_put_back(outcome, task_path=task_path, job_id=job_id)
            continue
        if outcome.kind == "failed":
            assert outcome.error is not None
            raise outcome.error
        return outcome.value


@worker_ready.connect
def _consume_nothing_when_frozen_for_good(sender: Any, **kwargs: Any) -> None:
    status = state.current()
    if status.enabled and status.source in ("environment", "process"):
        logger.warning("%s", STARTED_FROZEN.format(how=status.describe()))
        for queue in list(sender.task_consumer.queues):
            sender.cancel_task_queue(queue.name)
