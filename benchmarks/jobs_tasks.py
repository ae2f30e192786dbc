"""The job the jobs benchmark runs: one small write to a protected table, as most site jobs make."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django_tasks import task


@task
def add_group(name: str) -> None:
    Group.objects.create(name=name)
