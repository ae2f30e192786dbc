"""`manage.py db_worker`: django-tasks-db's worker, made deploy-aware by deployguard (listed first
in INSTALLED_APPS, so this command is the one `manage.py db_worker` runs)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import CommandError
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands import db_worker

from deployguard.jobs.db_worker import DeployAwareWorker


class Command(db_worker.Command):
    help = (
        "Run the background jobs queued in the database, one transaction per job, holding them while "
        "deploy mode is on (or unreadable) and starting them again, in order, once it is off. A job that "
        "meets the freeze is put back, not failed. Run as many as you like, on any host sharing the "
        "database. Exit status: 0 stopped (SIGINT/SIGTERM, --batch or --max-tasks done), 1 stopped "
        "twice mid-job (the job stays queued), 2 bad arguments."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.configure_logging(options["verbosity"])
        queue_names = options["queue_name"].split(",")
        excluded = options["exclude_queues"].split(",") if options["exclude_queues"] else []
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*", returncode=2)
        worker = DeployAwareWorker(
            queue_names=queue_names,
            interval=options["interval"],
            batch=options["batch"],
            backend_name=options["backend_name"],
            startup_delay=options["startup_delay"],
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
            excluded_queue_names=excluded,
        )
        if options["reload"] and not options["batch"]:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the reloader's child runs jobs
            run_with_reloader(worker.run)
            return
        worker.configure_signals()
        worker.run()
