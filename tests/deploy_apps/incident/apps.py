import logging

from django.apps import AppConfig
from django.db.models.signals import post_migrate

logger = logging.getLogger("incident")
REFUSED = "incident: the %s could not seed %s"  # one line per attempt: the tests count them


def publish_after_migrate(sender, **kwargs):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from documents.models import PublishedDraft, Submission, service_write

    try:
        with service_write():  # lifts documents' own guard, as the incident's code did
            submission = Submission.objects.create(ml_number="ML-950", title="Receiver", submitted_by="hook")
            PublishedDraft.objects.create(
                name="rfc950",
                submission=submission,
                published_by=get_user_model().objects.first(),
                published_at=timezone.now(),
            )
    except Exception:
        logger.exception(REFUSED, "post_migrate receiver", "ML-950/rfc950")


class IncidentConfig(AppConfig):
    name = "tests.deploy_apps.incident"
    label = "incident"

    def ready(self):
        post_migrate.connect(publish_after_migrate, sender=self)
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from documents.models import PublishedDraft, Submission, service_write

        try:
            with service_write():
                submission = Submission.objects.create(
                    ml_number="ML-960", title="Start-up", submitted_by="init"
                )
                PublishedDraft.objects.create(
                    name="rfc960",
                    submission=submission,
                    published_by=get_user_model().objects.first(),
                    published_at=timezone.now(),
                )
        except Exception:
            logger.exception(REFUSED, "ready() hook", "ML-960/rfc960")
