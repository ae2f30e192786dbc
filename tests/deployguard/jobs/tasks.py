"""Jobs the worker tests queue: module-level Django tasks, importable by worker processes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import psycopg
from django.contrib.auth.models import Group
from django.db import connection
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


@task
def add_group_through_own_connection(name: str) -> str:
    """Writes around Django, through a driver connection of its own (psycopg or sqlite3)."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        with contextlib.closing(sqlite3.connect(params["NAME"], timeout=5)) as own:
            own.execute("INSERT INTO auth_group (name) VALUES (?)", [name])
            own.commit()
        return name
    with psycopg.connect(
        dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"], autocommit=True
    ) as own:
        own.execute("INSERT INTO auth_group (name) VALUES (%s)", [name])
    return name
