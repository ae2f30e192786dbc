"""Make sure a development superuser exists, printing its generated password once."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

REFUSED_OUTSIDE_DEVELOPMENT = (
    "ensure_dev_admin only runs with DJANGO_ENV=development (this is {env}); "
    "create real accounts with `manage.py createsuperuser`."
)


class Command(BaseCommand):
    help = (
        "Development only: create the superuser USERNAME (default 'admin') with a generated "
        "password, printed once. If the account exists, leave it alone unless --reset-password. "
        "Exit status: 0 done; 1 refused outside DJANGO_ENV=development; 2 not a valid username."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin", help="Account name (default: admin).")
        parser.add_argument(
            "--reset-password", action="store_true", help="Give the existing account a new password."
        )

    def handle(self, *args: Any, username: str, reset_password: bool, **options: Any) -> None:
        if settings.DJANGO_ENV != "development":
            raise CommandError(REFUSED_OUTSIDE_DEVELOPMENT.format(env=settings.DJANGO_ENV), returncode=1)
        user_model = get_user_model()
        try:
            user_model._meta.get_field(user_model.USERNAME_FIELD).clean(username, None)
        except ValidationError as error:
            raise CommandError(
                f"--username {username[:50]!r} is not a valid username: {' '.join(error.messages)}",
                returncode=2,
            ) from None
        user = user_model.objects.filter(username=username).first()
        if user is not None and not reset_password:
            self.stdout.write(
                f"Development admin '{username}' exists; its password was printed when it was made "
                "(run `make reset-admin` for a new one)."
            )
            return
        password = secrets.token_urlsafe(12)
        if user is None:
            user_model.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Development admin: username '{username}', password '{password}' (shown once)."
            )
        )
