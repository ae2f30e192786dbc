"""The Celery application, for sites that run their jobs on Celery (CELERY_BROKER_URL set).

`celery -A project worker` and `celery -A project beat` load it. Every job is a Django task;
deployguard's one Celery task runs it, deploy-aware (deployguard.jobs.celery_tasks).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["deployguard.jobs"], related_name="celery_tasks")
