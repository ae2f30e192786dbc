from django.apps import AppConfig
from django.utils import timezone


class RogueConfig(AppConfig):
    name = "tests.rogue"
    label = "rogue"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from documents.models import PublishedDraft, Submission

        submission = Submission(ml_number="ML-900", title="Startup seed", submitted_by="init")
        submission.save()
        PublishedDraft.objects.create(
            name="rfc900",
            submission=submission,
            published_by=get_user_model()(pk=1),
            published_at=timezone.now(),
        )
