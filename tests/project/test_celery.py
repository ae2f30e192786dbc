"""Celery is configured from the environment: unset, nothing uses or connects to a broker."""

from __future__ import annotations

import json

from django.conf import settings

from tests.project.test_settings import manage

SHOW = """
import json
from django.conf import settings
from django_tasks import task_backends
from project.celery import app
print("SHOW " + json.dumps({
    "backend": type(task_backends["default"]).__name__,
    "backends": sorted(settings.TASKS),
    "broker": app.conf.broker_url,
    "beat": {name: [entry["task"], list(entry["args"]), entry["schedule"]]
             for name, entry in app.conf.beat_schedule.items()},
    "acks_late": app.conf.task_acks_late,
}))
"""


def show(**env: str) -> dict:
    result = manage("shell", "-c", SHOW, DJANGO_ENV="test", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("SHOW "))[5:])


def test_without_a_broker_url_jobs_go_to_the_database_queue_and_no_broker_is_configured():
    shown = show(CELERY_BROKER_URL="")

    assert (shown["backend"], shown["backends"]) == ("DatabaseBackend", ["default"])
    assert shown["broker"] in (None, "")


def test_with_a_broker_url_jobs_go_to_celery_and_beat_queues_the_integrity_watch():
    shown = show(CELERY_BROKER_URL="redis://127.0.0.1:6379/8", DEPLOYGUARD_INTEGRITY_WATCH_MINUTES="2")

    assert (shown["backend"], shown["backends"]) == ("CeleryBackend", ["database", "default"])
    assert shown["broker"] == "redis://127.0.0.1:6379/8"
    assert shown["beat"] == {
        "deployguard.jobs.watch.integrity_watch": [
            "deployguard.jobs.run", ["deployguard.jobs.watch.integrity_watch"], 120.0,
        ]
    }  # fmt: skip
    assert shown["acks_late"] is True


def test_the_integrity_watch_runs_every_five_minutes_by_default():
    assert settings.DEPLOYGUARD_PERIODIC_JOBS == {"deployguard.jobs.watch.integrity_watch": 300.0}
