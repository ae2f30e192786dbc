from documents.models import Submission
from tests.factories import SubmissionFactory


def test_factory_publishes_through_the_service(db):
    submission = SubmissionFactory(status=Submission.Status.PUBLISHED)
    assert submission.status == Submission.Status.PUBLISHED
    assert submission.draft.name.startswith("rfc")
