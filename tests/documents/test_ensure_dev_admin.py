from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from tests.utils import run_command

pytestmark = pytest.mark.django_db


def test_creates_the_development_admin_once_and_prints_its_password_once(settings):
    settings.DJANGO_ENV = "development"

    stdout, _, status = run_command("ensure_dev_admin")
    again, _, second_status = run_command("ensure_dev_admin")

    password = re.fullmatch(
        r"Development admin: username 'admin', password '(\S+)' \(shown once\)\.\n", stdout
    )
    assert (status, second_status) == (0, 0)
    assert password is not None
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password.group(1))
    assert "password" not in again.replace("its password was printed", "")


def test_refuses_outside_development():
    _, stderr, status = run_command("ensure_dev_admin")

    assert status == 1
    assert "ensure_dev_admin only runs with DJANGO_ENV=development (this is test)" in stderr
    assert not get_user_model().objects.exists()
