"""Settings read from the environment: production is secure by default and refuses to start unsafe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a-production-secret-that-is-long-enough-and-random-0123456789abcdef",
    "ALLOWED_HOSTS": "docs.example.org",
    "DATABASE_URL": "sqlite:////tmp/deploysafe-settings-check.sqlite3",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DJANGO_ENV", "SECRET_KEY", "DEBUG"}}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", **{**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode == 1
    assert "SECRET_KEY must be set in production (DJANGO_ENV=production)" in result.stderr


def test_production_refuses_debug():
    result = manage("check", **{**PRODUCTION, "DEBUG": "true"})

    assert result.returncode == 1
    assert "DEBUG must not be on in production" in result.stderr


def test_an_unknown_environment_name_is_refused():
    result = manage("check", DJANGO_ENV="staging")

    assert result.returncode == 1
    assert "DJANGO_ENV='staging' is not one of development, test, production" in result.stderr


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("Ops Team <ops@example.org>", [("Ops Team", "ops@example.org")]),
        ("a@example.org", [("", "a@example.org")]),
    ],
)
def test_admins_are_read_from_name_and_address_pairs(raw, parsed):
    result = manage(
        "shell", "--no-imports", "-c", "from django.conf import settings; print(settings.ADMINS)", ADMINS=raw
    )

    assert result.stdout.strip() == repr(parsed), result.stderr[-2000:]


def test_a_secret_key_starting_with_a_dollar_sign_is_taken_literally():
    key = "$" + PRODUCTION["SECRET_KEY"]

    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        **{**PRODUCTION, "SECRET_KEY": key},
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == key
