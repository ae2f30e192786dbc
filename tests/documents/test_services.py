from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from documents import services
from documents.exceptions import PermissionRefused, ReasonRequired, SamePersonRefused, TransitionRefused
from documents.models import DraftNumber, PublishedDraft, Submission
from tests.factories import EditorFactory, StaffFactory, SubmissionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_create_submission_starts_submitted_and_records_actor_reason_and_origin(editor):
    submission = services.create_submission(
        actor=editor, ml_number="ML-001", title="Widget protocol", submitted_by="Ada Lovelace"
    )

    assert submission.status == Submission.Status.SUBMITTED
    record = submission.history.get()
    assert record.history_type == "+"
    assert record.history_user == editor
    assert record.history_change_reason == "Submitted"
    assert record.history_origin.startswith("process:")


def test_create_submission_refuses_actor_without_add_permission():
    clerk = StaffFactory()

    with pytest.raises(PermissionRefused) as refusal:
        services.create_submission(actor=clerk, ml_number="ML-001", title="T", submitted_by="S")

    assert str(refusal.value) == (
        f"{clerk} lacks the permission 'documents.add_submission'; ask an administrator to grant it."
    )
    assert not Submission.objects.exists()


@pytest.mark.parametrize("ml_number", ["ML-", "ML-12a", "ml-001", "XX-001", "ML-001 "])
def test_create_submission_refuses_malformed_ml_numbers(editor, ml_number):
    with pytest.raises(ValidationError) as error:
        services.create_submission(actor=editor, ml_number=ml_number, title="T", submitted_by="S")

    assert "ml_number" in error.value.message_dict
    assert not Submission.objects.exists()


def test_approve_moves_a_submitted_submission_to_approved_and_names_the_approver(editor):
    submission = SubmissionFactory()

    approved = services.approve_submission(actor=editor, submission=submission)

    assert approved.status == Submission.Status.APPROVED
    assert approved.approved_by == editor
    latest = approved.history.first()
    assert (latest.status, latest.history_user, latest.history_change_reason) == (
        "approved",
        editor,
        "Approved",
    )


def test_approve_refuses_a_submission_that_is_not_submitted(editor):
    submission = SubmissionFactory(status=Submission.Status.REJECTED)

    with pytest.raises(TransitionRefused) as refusal:
        services.approve_submission(actor=editor, submission=submission)

    assert str(refusal.value) == (
        f"{submission.ml_number} is rejected: only submitted submissions can be approved."
    )
    submission.refresh_from_db()
    assert submission.status == Submission.Status.REJECTED


def test_reject_needs_a_reason(editor):
    submission = SubmissionFactory()

    with pytest.raises(ReasonRequired) as refusal:
        services.reject_submission(actor=editor, submission=submission, reason="   ")

    assert str(refusal.value) == "Give a reason for the audit trail: rejecting needs one."
    assert submission.history.count() == 1


def test_publish_creates_the_draft_with_the_next_name_and_audits_who_and_why(editor):
    first = SubmissionFactory(status=Submission.Status.APPROVED)
    second = SubmissionFactory(status=Submission.Status.APPROVED)

    draft_one = services.publish_submission(actor=editor, submission=first, reason="Board vote 12")
    draft_two = services.publish_submission(actor=editor, submission=second, reason="Board vote 13")

    assert (draft_one.name, draft_two.name) == ("rfc1", "rfc2")
    assert draft_one.published_by == editor
    first.refresh_from_db()
    assert first.status == Submission.Status.PUBLISHED
    creation = draft_one.history.get()
    assert (creation.history_type, creation.history_user, creation.history_change_reason) == (
        "+",
        editor,
        "Board vote 12",
    )
    assert first.history.first().history_change_reason == "Board vote 12"


def test_publish_refuses_a_submission_that_is_not_approved(editor):
    submission = SubmissionFactory()

    with pytest.raises(TransitionRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert str(refusal.value) == (
        f"{submission.ml_number} is submitted, not approved: approve it first, then publish."
    )
    assert not PublishedDraft.objects.exists()
    assert not DraftNumber.objects.exists()


def test_publish_refuses_a_submission_already_published(editor):
    submission = SubmissionFactory(status=Submission.Status.PUBLISHED)

    with pytest.raises(TransitionRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Again")

    assert str(refusal.value) == (
        f"{submission.ml_number} is already published as {submission.draft.name}; nothing to do."
    )
    assert PublishedDraft.objects.count() == 1


def test_publish_refuses_an_actor_without_the_publish_permission():
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    approver = UserFactory(is_staff=True, permissions=("approve_submission",))

    with pytest.raises(PermissionRefused):
        services.publish_submission(actor=approver, submission=submission, reason="Go")

    assert not PublishedDraft.objects.exists()
    submission.refresh_from_db()
    assert submission.status == Submission.Status.APPROVED


def test_publish_refuses_an_inactive_actor_even_with_the_permission():
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    former = EditorFactory(is_active=False)

    with pytest.raises(PermissionRefused):
        services.publish_submission(actor=former, submission=submission, reason="Go")

    assert not PublishedDraft.objects.exists()


def test_publish_needs_a_reason(editor):
    submission = SubmissionFactory(status=Submission.Status.APPROVED)

    with pytest.raises(ReasonRequired):
        services.publish_submission(actor=editor, submission=submission, reason="")

    assert not PublishedDraft.objects.exists()


def test_two_person_rule_refuses_the_approver_as_publisher_when_enabled(settings, editor):
    settings.DOCUMENTS_REQUIRE_SEPARATE_PUBLISHER = True
    submission = SubmissionFactory()
    services.approve_submission(actor=editor, submission=submission)

    with pytest.raises(SamePersonRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Go")
    assert "two-person rule" in str(refusal.value)
    assert not PublishedDraft.objects.exists()

    colleague = EditorFactory()
    draft = services.publish_submission(actor=colleague, submission=submission, reason="Go")
    assert draft.published_by == colleague


def test_two_person_rule_is_off_by_default(editor):
    submission = SubmissionFactory()
    services.approve_submission(actor=editor, submission=submission)

    draft = services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert draft.published_by == editor


def test_draft_numbers_start_at_the_configured_number_and_above_existing_drafts(settings, editor):
    settings.DOCUMENTS_FIRST_DRAFT_NUMBER = 9000
    submission = SubmissionFactory(status=Submission.Status.APPROVED)

    assert services.next_draft_names(2) == ["rfc9000", "rfc9001"]
    draft = services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert draft.name == "rfc9000"
    assert services.next_draft_names(1) == ["rfc9001"]


def test_withdraw_marks_the_draft_withdrawn_and_refuses_a_second_time(editor):
    submission = SubmissionFactory(status=Submission.Status.PUBLISHED)

    draft = services.withdraw_draft(actor=editor, draft=submission.draft, reason="Superseded")

    assert draft.status == PublishedDraft.Status.WITHDRAWN
    assert (draft.withdrawn_by, draft.history.first().history_change_reason) == (editor, "Superseded")
    with pytest.raises(TransitionRefused) as refusal:
        services.withdraw_draft(actor=editor, draft=draft, reason="Again")
    assert str(refusal.value) == f"{draft.name} is already withdrawn; nothing to do."


@pytest.mark.parametrize("status", ["approved", "rejected", "published"])
def test_only_a_submitted_submission_can_be_edited_so_what_is_published_is_what_was_approved(editor, status):
    submission = SubmissionFactory(status=status)

    with pytest.raises(TransitionRefused) as refusal:
        services.update_submission(actor=editor, submission=submission, title="New", submitted_by="X")

    assert str(refusal.value) == (
        f"{submission.ml_number} is {status}: only submitted submissions can be edited, so that what is "
        "published is what was approved."
    )
    submission.refresh_from_db()
    assert submission.title != "New"


def test_publishing_a_published_submission_whose_draft_is_missing_is_refused_not_a_crash(editor):
    from tests.documents.fakes import raw_insert_submission

    pk = raw_insert_submission("ML-777", status="published", approved_by_id=editor.pk)

    with pytest.raises(TransitionRefused) as refusal:
        services.publish_submission(actor=editor, submission=Submission.objects.get(pk=pk), reason="Again")

    assert str(refusal.value) == (
        "ML-777 is marked published but has no draft, which only a write around the services "
        f"can cause: see `manage.py explain_row documents.submission {pk}` and `manage.py scrub_fake_data`."
    )


def test_publishing_costs_a_constant_number_of_queries(editor, django_assert_max_num_queries):
    submissions = [SubmissionFactory(status=Submission.Status.APPROVED) for _ in range(3)]
    services.publish_submission(actor=editor, submission=submissions[0], reason="Warm the counter")

    # 14: the state checks, the rule check (one query), the free-name check, the savepoint
    # around the insert, the draft, the submission and their history records.
    for submission in submissions[1:]:
        with django_assert_max_num_queries(14):
            services.publish_submission(actor=editor, submission=submission, reason="Go")


# --- draft names: never a collision, whoever took a name -------------------------------------


def test_publishing_skips_names_taken_by_sql_before_the_first_publication(editor):
    from tests.documents.fakes import raw_insert_draft, raw_insert_submission

    stray = raw_insert_submission("ML-900", status="published", approved_by_id=editor.pk)
    raw_insert_draft("rfc1", submission_id=stray, published_by_id=editor.pk)
    # A number no bigint holds: left out of "the highest number so far", not an overflow.
    huge = raw_insert_submission("ML-901")
    raw_insert_draft("rfc1234567890123456789012", submission_id=huge, published_by_id=editor.pk)
    first, second = (SubmissionFactory(status=Submission.Status.APPROVED) for _ in range(2))

    assert services.next_draft_names(2) == ["rfc2", "rfc3"]
    names = [
        services.publish_submission(actor=editor, submission=s, reason="Go").name for s in (first, second)
    ]

    assert names == ["rfc2", "rfc3"]


def test_publishing_skips_names_the_counter_would_hand_out_next(editor):
    from tests.documents.fakes import raw_insert_draft, raw_insert_submission

    services.publish_submission(
        actor=editor, submission=SubmissionFactory(status=Submission.Status.APPROVED), reason="Go"
    )
    for number in (2, 3, 5):
        stray = raw_insert_submission(f"ML-90{number}")
        raw_insert_draft(f"rfc{number}", submission_id=stray, published_by_id=editor.pk)
    submissions = [SubmissionFactory(status=Submission.Status.APPROVED) for _ in range(3)]

    assert services.next_draft_names(3) == ["rfc4", "rfc6", "rfc7"]
    names = [services.publish_submission(actor=editor, submission=s, reason="Go").name for s in submissions]

    assert names == ["rfc4", "rfc6", "rfc7"]
    assert DraftNumber.objects.get().last_number == 7


def test_a_name_taken_between_the_check_and_the_insert_moves_to_the_next_free_one(editor, monkeypatch):
    from tests.documents.fakes import raw_insert_draft, raw_insert_submission

    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    stray = raw_insert_submission("ML-900")
    real_free_numbers = services._free_numbers
    taken = []

    def sql_takes_it_meanwhile(start: int, count: int) -> list[int]:
        free = real_free_numbers(start, count)
        if not taken:
            taken.append(raw_insert_draft(f"rfc{free[0]}", submission_id=stray, published_by_id=editor.pk))
        return free

    monkeypatch.setattr(services, "_free_numbers", sql_takes_it_meanwhile)
    draft = services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert draft.name == "rfc2"
    assert PublishedDraft.objects.get(pk=taken[0]).name == "rfc1"
    assert draft.history.get().history_change_reason == "Go"


def test_publishing_a_submission_that_sql_gave_a_draft_is_refused_not_an_error(editor):
    from tests.documents.fakes import raw_insert_draft

    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    stray = raw_insert_draft("rfc77", submission_id=submission.pk, published_by_id=editor.pk)

    with pytest.raises(TransitionRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert str(refusal.value) == (
        f"{submission.ml_number} already has a draft, rfc77, written around the services (the submission "
        f"is approved): see `manage.py explain_row documents.publisheddraft {stray}`."
    )
    assert PublishedDraft.objects.count() == 1
