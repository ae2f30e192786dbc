import os
from pathlib import Path

from django.apps import AppConfig
from django.db import DatabaseError, connection

from deployguard import DeployModeActive


class StartupDdlConfig(AppConfig):
    name = "tests.deploy_apps.startup_ddl"
    label = "startup_ddl"

    def ready(self):
        outcome = "created"
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE startup_ddl_probe (id integer)")
        except (DeployModeActive, DatabaseError) as error:
            outcome = type(error).__name__
        if note := os.environ.get("DEPLOY_TEST_STARTUP_NOTE"):
            Path(note).write_text(outcome)
