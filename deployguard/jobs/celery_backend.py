"""A Django tasks backend that hands jobs to Celery: `task.enqueue()` stays the one job API.

Every job is sent as deployguard's one Celery task (celery_tasks.RUN_JOB) with the job's import
path and arguments; the Celery worker imports the Django task and runs it deploy-aware.
OPTIONS: {"app": "<import path of the Celery app>"}.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks import DEFAULT_TASK_QUEUE_NAME, TaskResult, TaskResultStatus
from django_tasks.backends.base import BaseTaskBackend
from django_tasks.base import Task
from django_tasks.utils import normalize_json

RUN_JOB = "deployguard.jobs.run"
"""The name of the Celery task that runs every job (also CELERY_BEAT_SCHEDULE's)."""


class CeleryBackend(BaseTaskBackend):
    supports_defer = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.app_path = self.options.get("app", "")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        app = import_string(self.app_path)
        arguments = normalize_json({"args": args, "kwargs": kwargs})
        sent = app.send_task(
            RUN_JOB,
            args=[task.module_path, arguments["args"], arguments["kwargs"]],
            eta=task.run_after,
            queue=None if task.queue_name == DEFAULT_TASK_QUEUE_NAME else task.queue_name,
            shadow=task.module_path,  # what Celery's logs name it
        )
        return TaskResult(
            task=task,
            id=sent.id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=arguments["args"],
            kwargs=arguments["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
