"""Only legitimate production data is approved, published or saved: in the services and in the admin."""

from __future__ import annotations

import pytest
from django.urls import reverse

from deployguard.integrity import default_registry
from documents import legitimacy, services
from documents.exceptions import RuleRefused
from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.fakes import raw_update_submission
from tests.documents.test_admin import CHANGELIST, action_post, editor_client  # noqa: F401
from tests.factories import SubmissionFactory

pytestmark = pytest.mark.django_db


def breach(rule_id: str) -> str:
    rule = default_registry.rules[rule_id]
    return f"{rule_id} ({rule.description}): {legitimacy.WHAT_TO_DO[rule_id]}"


E005 = breach("documents.E005")
E007 = breach("documents.E007")


def quarantine(submission: Submission) -> None:
    services.quarantine_rows(model=Submission, pks=[submission.pk], reason="scrub run 1")


def test_publishing_a_quarantined_submission_is_refused_with_the_rule_named(editor):
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    quarantine(submission)
    records = submission.history.count()

    with pytest.raises(RuleRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert str(refusal.value) == f"{submission.ml_number} cannot be published: it breaks {E005}."
    assert not PublishedDraft.objects.exists()
    submission.refresh_from_db()
    assert (submission.status, submission.data_source) == ("approved", DataSource.QUARANTINE)
    assert submission.history.count() == records


@pytest.mark.parametrize("data_source", ["seed", "test", "import"])
def test_publishing_data_that_is_not_production_is_refused(editor, data_source):
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(submission.pk, data_source=data_source)

    with pytest.raises(RuleRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert [b.rule_id for b in refusal.value.breaches] == ["documents.E005", "documents.E022"]
    assert not PublishedDraft.objects.exists()


def test_publishing_a_row_marked_not_legitimate_is_refused(editor):
    submission = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(submission.pk, is_legitimate=False)

    with pytest.raises(RuleRefused) as refusal:
        services.publish_submission(actor=editor, submission=submission, reason="Go")

    assert "documents.E005" in str(refusal.value)
    assert not PublishedDraft.objects.exists()


def test_creating_test_data_is_refused_and_leaves_no_row(editor):
    with pytest.raises(RuleRefused) as refusal:
        services.create_submission(
            actor=editor, ml_number="ML-001", title="Sample test document", submitted_by="Test User"
        )

    assert str(refusal.value) == f"ML-001 was not saved: it would break {E007}."
    assert not Submission.objects.exists()
    assert not Submission.history.exists()


def test_approving_test_data_is_refused_with_the_rule_named(editor):
    legacy = SubmissionFactory(submitted_by="Test User", title="Sample test document", legacy=True)

    with pytest.raises(RuleRefused) as refusal:
        services.approve_submission(actor=editor, submission=legacy)

    assert str(refusal.value) == f"{legacy.ml_number} cannot be approved: it breaks {E007}."
    legacy.refresh_from_db()
    assert legacy.status == Submission.Status.SUBMITTED
    assert legacy.history.count() == 1


def test_publishing_approved_test_data_is_refused(editor):
    legacy = SubmissionFactory(submitted_by="Test User", status=Submission.Status.APPROVED, legacy=True)

    with pytest.raises(RuleRefused):
        services.publish_submission(actor=editor, submission=legacy, reason="Go")

    assert not PublishedDraft.objects.exists()


def test_an_edit_that_introduces_test_data_is_refused_and_the_row_is_unchanged(editor):
    submission = SubmissionFactory(title="Widgets")

    with pytest.raises(RuleRefused) as refusal:
        services.update_submission(
            actor=editor, submission=submission, title="Widgets", submitted_by="Test User"
        )

    assert str(refusal.value) == f"{submission.ml_number} was not saved: it would break {E007}."
    submission.refresh_from_db()
    assert submission.submitted_by == "Grace Hopper"
    assert submission.history.count() == 1


def test_the_confirmation_page_lists_what_cannot_be_published_with_the_rule_and_no_confirm_button(
    editor_client,  # noqa: F811
):
    quarantined = SubmissionFactory(status=Submission.Status.APPROVED)
    quarantine(quarantined)
    test_data = SubmissionFactory(submitted_by="Test User", status=Submission.Status.APPROVED, legacy=True)

    response = action_post(editor_client, CHANGELIST, "publish_selected", [quarantined, test_data])

    assert response.status_code == 200
    assert dict(response.context["rows"]) == {
        Submission.objects.get(pk=quarantined.pk): f"cannot be published: {E005}",
        test_data: f"cannot be published: {E007}",
    }
    content = response.content.decode()
    assert 'name="post"' not in content and "Yes, publish" not in content
    assert "Nothing listed here can be published, so there is nothing to confirm." in content


def test_the_confirmation_page_offers_only_the_legitimate_rows(editor_client):  # noqa: F811
    good = SubmissionFactory(status=Submission.Status.APPROVED)
    quarantined = SubmissionFactory(status=Submission.Status.APPROVED)
    quarantine(quarantined)

    response = action_post(editor_client, CHANGELIST, "publish_selected", [good, quarantined])

    assert [outcome for _, outcome in response.context["rows"]] == [
        "will be published as rfc1",
        f"cannot be published: {E005}",
    ]
    assert response.context["shown"] == [f"{good.pk}:" + response.context["shown"][0].split(":")[1]]


def test_the_approve_confirmation_lists_test_data_as_cannot_be_approved(editor_client):  # noqa: F811
    legacy = SubmissionFactory(submitted_by="Test User", title="Sample test document", legacy=True)

    response = action_post(editor_client, CHANGELIST, "approve_selected", [legacy])

    assert [outcome for _, outcome in response.context["rows"]] == [f"cannot be approved: {E007}"]
    assert "Yes, approve" not in response.content.decode()


def test_the_edit_form_refuses_a_change_that_breaks_a_rule_naming_it(editor_client):  # noqa: F811
    submission = SubmissionFactory(title="Widgets")
    url = reverse("admin:documents_submission_change", args=[submission.pk])

    response = editor_client.post(url, {"title": "Sample test document", "submitted_by": "Grace Hopper"})

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Not saved: the change would break {E007}."
    ]
    submission.refresh_from_db()
    assert submission.title == "Widgets"
    assert submission.history.count() == 1


def test_the_add_form_refuses_test_data(editor_client):  # noqa: F811
    response = editor_client.post(
        reverse("admin:documents_submission_add"),
        {"ml_number": "ML-042", "title": "Widgets", "submitted_by": "Test User"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Not saved: the change would break {E007}."
    ]
    assert not Submission.objects.exists()


def test_the_edit_form_still_saves_a_legitimate_change(editor_client):  # noqa: F811
    submission = SubmissionFactory(title="Widgets")
    url = reverse("admin:documents_submission_change", args=[submission.pk])

    response = editor_client.post(url, {"title": "Results of the protocol contest", "submitted_by": "Ada"})

    assert response.status_code == 302
    submission.refresh_from_db()
    assert (submission.title, submission.submitted_by) == ("Results of the protocol contest", "Ada")
    assert submission.history.count() == 2
