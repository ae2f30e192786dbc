import os
import signal
import sys

from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_save


def kill_when_on(sender, instance, **kwargs):
    if instance.enabled and instance.deploy_id:
        transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))


class KillerConfig(AppConfig):
    name = "tests.deploy_apps.killer"
    label = "killer"

    def ready(self):
        from deployguard.models import DeployModeState

        if "deploy_safe" in sys.argv and "--recover" not in sys.argv:
            post_save.connect(kill_when_on, sender=DeployModeState)
