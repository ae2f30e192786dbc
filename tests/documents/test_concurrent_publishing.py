"""Two admins publishing at the same moment never share a name and never see an IntegrityError."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from documents import services
from documents.models import PublishedDraft, Submission
from tests.factories import EditorFactory, SubmissionFactory

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

ROUNDS = 3
PUBLISHERS = 4


def publish_concurrently(submissions: list[Submission], editors) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(submissions))

    def publish(submission: Submission, editor) -> None:
        try:
            barrier.wait(timeout=10)
            services.publish_submission(actor=editor, submission=submission, reason="Race")
        except BaseException as error:  # collected and asserted on by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=publish, args=pair) for pair in zip(submissions, editors, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


def test_concurrent_publishers_get_distinct_consecutive_names():
    editors = [EditorFactory() for _ in range(PUBLISHERS)]

    for _ in range(ROUNDS):
        batch = [SubmissionFactory(status="approved") for _ in range(PUBLISHERS)]
        assert publish_concurrently(batch, editors) == []

    names = sorted(PublishedDraft.objects.values_list("name", flat=True), key=lambda n: int(n[3:]))
    assert names == [f"rfc{n}" for n in range(1, ROUNDS * PUBLISHERS + 1)]


def test_two_admins_publishing_the_same_submission_publish_it_once():
    submission = SubmissionFactory(status="approved")
    editors = [EditorFactory() for _ in range(PUBLISHERS)]

    errors = publish_concurrently([submission] * PUBLISHERS, editors)

    assert len(errors) == PUBLISHERS - 1
    assert {type(e).__name__ for e in errors} == {"TransitionRefused"}
    assert PublishedDraft.objects.count() == 1
