"""`manage.py db_worker`, deploy-aware: django-tasks-db's worker, one transaction per job.

django-tasks-db claims a job in one transaction and runs it outside any. This worker does both,
and the job's completion, in one: a job is claimed (SELECT … FOR UPDATE SKIP LOCKED, so two
workers never get the same one), run and marked finished together, or not at all. So a worker
killed mid-job leaves its job queued, with nothing of it written; a job that meets the freeze
is rolled back and stays queued, in its place; and before claiming anything the worker asks
deployguard whether jobs may start, holding while deploy mode is on.

On SQLite the transaction holds the database's one write lock while the job runs: jobs run
one at a time across workers, and `deploy_mode on` waits for the running one (at most
DEPLOYGUARD_DRAIN_TIMEOUT).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import OperationalError, close_old_connections, transaction
from django_tasks_db.compat import TaskContext, task_finished, task_started
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import is_locked_database_exception

from deployguard.jobs import gate, runner, schedule

logger = logging.getLogger("deployguard.jobs")


class DeployAwareWorker(Worker):
    """django-tasks-db's Worker with deployguard's gate and one transaction per job."""

    def run(self) -> None:
        logger.info(
            "Starting deploy-aware worker worker_id=%s queues=%s", self.worker_id, ",".join(self.queue_names)
        )
        schedule.ensure_scheduled(self.backend_name)
        while self.running:
            close_old_connections()
            frozen = gate.closed()
            if frozen is not None:
                gate.hold(frozen, keep_waiting=lambda: self.running)
                continue
            ran = self.run_next()
            if ran is None:  # the database was locked: try again after the interval
                ran = False
            elif self.batch and not ran:
                logger.info("No more tasks to run for worker_id=%s - exiting gracefully.", self.worker_id)
                return
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                logger.info(
                    "Ran the maximum of %d tasks on worker_id=%s: exiting.", self._run_tasks, self.worker_id
                )
                return
            close_old_connections()
            if self.running and not ran:
                time.sleep(self.interval)

    def ready_jobs(self) -> Any:
        jobs = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            jobs = jobs.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            jobs = jobs.exclude(queue_name__in=self.excluded_queue_names)
        return jobs

    def run_next(self) -> bool | None:
        """Claim, run and finish the next ready job in one transaction: True if one ran (or was
        put back), False if none was ready, None if the database was locked."""
        jobs = self.ready_jobs()
        try:
            with runner.job_transaction(jobs.db):
                row = jobs.get_locked()
                if row is None:
                    return False
                outcome = self._run_claimed(row)
                if outcome.kind == "held":
                    transaction.set_rollback(True, using=jobs.db)
        except OperationalError as error:
            if is_locked_database_exception(error):
                return None
            raise
        finally:
            self.running_task = False
        if outcome.kind == "held":
            runner.record_put_back(outcome, task_path=row.task_path, job_id=str(row.id), using=jobs.db)
            return True
        self._run_tasks += 1
        task_finished.send(sender=type(row.task.get_backend()), task_result=row.task_result)
        return True

    def _run_claimed(self, row: DBTaskResult) -> runner.Outcome:
        row.claim(self.worker_id)
        self.running_task = True
        task, result = row.task, row.task_result
        task_started.send(sender=type(task.get_backend()), task_result=result)
        if task.takes_context:
            call = lambda: task.call(TaskContext(task_result=result), *result.args, **result.kwargs)  # noqa: E731
        else:
            call = lambda: task.call(*result.args, **result.kwargs)  # noqa: E731
        outcome = runner.run(call, label=f"job:{row.task_path} id={row.id}", using=row._state.db or "default")
        if outcome.kind == "done":
            try:
                row.set_successful(outcome.value)
            except (TypeError, ValueError) as error:  # a return value JSON cannot hold
                outcome = runner.Outcome("failed", error=error)
        if outcome.kind == "failed":
            assert outcome.error is not None
            row.set_failed(outcome.error)
        if outcome.kind != "held":
            schedule.after_run(row)
        return outcome
