from django.apps import AppConfig
from django.db.models.signals import post_migrate


def publish_drafts(sender, **kwargs):
    from tests.deploy_apps.rogue_writes import publish_behind_the_services

    # Goes around documents' services, as the incident's code did: only the write guard is left.
    publish_behind_the_services("ML-950", "rfc950", title="Receiver", submitted_by="hook")


class ReceiverConfig(AppConfig):
    name = "tests.deploy_apps.receiver"
    label = "receiver"

    def ready(self):
        post_migrate.connect(publish_drafts, sender=self)
