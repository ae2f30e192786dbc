"""The publication notice: queued when a publication commits, mailed to the configured list."""

from __future__ import annotations

import pytest
from django.core import mail
from django_tasks_db.models import DBTaskResult

from documents import services
from documents.models import PublishedDraft, Submission
from documents.tasks import NOTICE_SUBJECT, send_publication_notice
from tests.factories import SubmissionFactory

NOTICE_PATH = "documents.tasks.send_publication_notice"


@pytest.fixture
def approved(editor) -> Submission:
    submission = SubmissionFactory(ml_number="ML-042", title="Deploy-safe publishing")
    return services.approve_submission(actor=editor, submission=submission)


def test_publishing_queues_one_notice_for_the_draft_once_it_commits(
    db, editor, approved, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        draft = services.publish_submission(actor=editor, submission=approved, reason="Ready")
    assert not DBTaskResult.objects.filter(task_path=NOTICE_PATH).exists()  # not before the commit

    for callback in callbacks:
        callback()

    job = DBTaskResult.objects.get(task_path=NOTICE_PATH)
    assert (job.status, job.args_kwargs) == ("READY", {"args": [draft.pk], "kwargs": {}})


def test_a_refused_publication_queues_no_notice(db, editor, django_capture_on_commit_callbacks):
    submitted = SubmissionFactory(ml_number="ML-043")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(services.TransitionRefused):
        services.publish_submission(actor=editor, submission=submitted, reason="Too early")

    assert not DBTaskResult.objects.filter(task_path=NOTICE_PATH).exists()


def test_the_notice_is_mailed_to_the_configured_list(db, editor, approved, settings):
    settings.DOCUMENTS_PUBLICATION_NOTICE_TO = ["list@example.org", "editors@example.org"]
    draft = services.publish_submission(actor=editor, submission=approved, reason="Ready")
    drafts_before = PublishedDraft.objects.count()

    assert send_publication_notice.call(draft.pk) == 2

    (message,) = mail.outbox
    assert message.subject == NOTICE_SUBJECT.format(
        name=draft.name, ml_number="ML-042", title="Deploy-safe publishing"
    )
    assert message.to == ["list@example.org", "editors@example.org"]
    assert PublishedDraft.objects.count() == drafts_before  # a notice creates no document


def test_without_a_list_no_notice_is_mailed(db, editor, approved, settings):
    settings.DOCUMENTS_PUBLICATION_NOTICE_TO = []
    draft = services.publish_submission(actor=editor, submission=approved, reason="Ready")

    assert send_publication_notice.call(draft.pk) == 0
    assert mail.outbox == []
