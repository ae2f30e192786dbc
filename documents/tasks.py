"""Documents' background jobs: the publication notice. Jobs read documents; none creates one."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django_tasks import task

from documents.models import PublishedDraft

NOTICE_SUBJECT = "Published: {name} ({ml_number}) {title}"
NOTICE_BODY = (
    "{name} was published from {ml_number} by {publisher} at {published_at:%Y-%m-%d %H:%M} UTC.\n\n{title}\n"
)


def notice_recipients() -> list[str]:
    return list(getattr(settings, "DOCUMENTS_PUBLICATION_NOTICE_TO", []))


@task
def send_publication_notice(draft_id: int) -> int:
    """Mail DOCUMENTS_PUBLICATION_NOTICE_TO that a draft was published; returns how many were mailed."""
    recipients = notice_recipients()
    draft = PublishedDraft.objects.select_related("submission", "published_by").filter(pk=draft_id).first()
    if not recipients or draft is None:
        return 0
    fields = {
        "name": draft.name,
        "ml_number": draft.submission.ml_number,
        "title": draft.submission.title,
        "publisher": draft.published_by.get_username(),
        "published_at": draft.published_at,
    }
    send_mail(
        NOTICE_SUBJECT.format(**fields), NOTICE_BODY.format(**fields), settings.SERVER_EMAIL, recipients
    )
    return len(recipients)
