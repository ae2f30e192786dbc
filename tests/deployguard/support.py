"""Helpers for deploy-mode tests: snapshots of the data, manage.py in another process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection, transaction

from deployguard import fingerprints
from deployguard.fingerprint import PIN_RUNNING, snapshot_horizon
from deployguard.fingerprints import FingerprintsAt
from documents.models import PublishedDraft, Submission

BASE_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SUBPROCESS_TIMEOUT = 60
# One key for every process of a test: gunicorn workers must agree on sessions and CSRF.
SECRET_KEY = "deployguard-tests-" + "x" * 40


def database_url_for(settings_dict: dict[str, Any]) -> str:
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def subprocess_env(url: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DEPLOYMENT_MODE"}
    # The same environment as this test process, so password hashers and the rest agree.
    env.update(
        DJANGO_ENV=settings.DJANGO_ENV, DATABASE_URL=url, SECRET_KEY=SECRET_KEY, PYTHONUNBUFFERED="1", **extra
    )
    return env


def manage(url: str, *args: str, check: bool = False, **extra_env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [PYTHON, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=subprocess_env(url, **extra_env),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if check and result.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SNAPSHOT_MODELS = (
    Submission,
    PublishedDraft,
    Submission.history.model,
    PublishedDraft.history.model,
    Group,
    User,
)


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables the write-path tests try to change, in primary-key order."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values()) for model in SNAPSHOT_MODELS
    }


def group_count(url: str) -> int:
    result = manage(
        url, "shell", "-c", "from django.contrib.auth.models import Group; print(Group.objects.count())"
    )
    return int(result.stdout.strip().splitlines()[-1])


def fingerprints_as_frozen(earlier: FingerprintsAt | None = None) -> FingerprintsAt:
    """Every protected table's fingerprint as deploy_safe takes them beside its backup: in one
    snapshot with its horizon (PostgreSQL), reusing `earlier`'s where proved unwritten since."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            return FingerprintsAt(fingerprints.take(earlier=earlier))
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"SELECT {PIN_RUNNING}")
        return FingerprintsAt(fingerprints.take(earlier=earlier), snapshot_horizon())
