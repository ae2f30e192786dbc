"""The project's settings plus the rogue app, for the start-up hook test."""

from project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.rogue"]  # noqa: F405
