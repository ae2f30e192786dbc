from django.apps import AppConfig
from django.db.models.signals import post_migrate


def publish_drafts(sender, **kwargs):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from documents.models import PublishedDraft, Submission, service_write

    # Lifts documents' own guard, as the incident's code did: only the write guard is left.
    with service_write():
        submission = Submission.objects.create(ml_number="ML-950", title="Receiver", submitted_by="hook")
        PublishedDraft.objects.create(
            name="rfc950",
            submission=submission,
            published_by=get_user_model().objects.first(),
            published_at=timezone.now(),
        )


class ReceiverConfig(AppConfig):
    name = "tests.deploy_apps.receiver"
    label = "receiver"

    def ready(self):
        post_migrate.connect(publish_drafts, sender=self)
