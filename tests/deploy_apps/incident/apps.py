import logging

from django.apps import AppConfig
from django.db.models.signals import post_migrate

logger = logging.getLogger("incident")
REFUSED = "incident: the %s could not seed %s"  # one line per attempt: the tests count them


def publish_after_migrate(sender, **kwargs):
    from tests.deploy_apps.rogue_writes import publish_behind_the_services

    try:  # around documents' services, as the incident's code did
        publish_behind_the_services("ML-950", "rfc950", title="Receiver", submitted_by="hook")
    except Exception:
        logger.exception(REFUSED, "post_migrate receiver", "ML-950/rfc950")


class IncidentConfig(AppConfig):
    name = "tests.deploy_apps.incident"
    label = "incident"

    def ready(self):
        post_migrate.connect(publish_after_migrate, sender=self)
        from tests.deploy_apps.rogue_writes import publish_behind_the_services

        try:
            publish_behind_the_services("ML-960", "rfc960", title="Start-up", submitted_by="init")
        except Exception:
            logger.exception(REFUSED, "ready() hook", "ML-960/rfc960")
