"""Jobs the worker tests queue: module-level Django tasks, importable by worker processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.contrib.auth.models import Group
from django_tasks import task

from deployguard import DeployModeActive


@task
def add_group(name: str) -> str:
    """A job that writes a row of a protected table (auth_group): the incident's kind of job."""
    Group.objects.create(name=name)
    return name


@task
def add_group_when_told(name: str, started: str, go: str) -> str:
    """Writes once the file `go` exists, after saying it started (the file `started`)."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    Group.objects.create(name=name)
    return name


@task
def add_group_swallowing_refusal(name: str) -> str:
    """Catches the deploy-mode refusal and carries on, as the incident's code did."""
    try:
        Group.objects.create(name=name)
    except DeployModeActive:
        return "refused, carried on"
    return name


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def add_group_then_wait(name: str, started: str, go: str) -> str:
    """Writes, says so (the file `started`), then keeps its transaction open until `go` exists."""
    Group.objects.create(name=name)
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return name
