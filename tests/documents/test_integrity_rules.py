from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import connection

from deployguard.integrity import default_registry, evaluate
from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.fakes import (
    raw_insert_draft,
    raw_insert_submission,
    raw_update_submission,
    script_publishes_without_user,
)
from tests.factories import SubmissionFactory, SuperuserFactory, published_draft
from tests.utils import behind_the_services


def offending(rule_id: str) -> set[int]:
    return set(default_registry.rules[rule_id].offending().values_list("pk", flat=True))


def broken_rules() -> dict[str, set[int]]:
    return {rule_id: pks for rule_id in default_registry.rules if (pks := offending(rule_id))}


@contextmanager
def check_constraints_off(table: str, *names: str):
    """Let a test store what the CHECK constraints forbid, as a damaged database might."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        else:
            # Deferred foreign-key checks must run before the table can be altered.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for name in names:
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    try:
        yield
    finally:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA ignore_check_constraints = OFF")


@pytest.fixture
def legitimate(db):
    """One document published through the services, as the admin does it."""
    return published_draft(title="Interoperable widgets", submitted_by="Grace Hopper")


def test_a_document_published_through_the_services_breaks_no_rule(legitimate):
    SubmissionFactory(title="Results of the 2024 protocol contest")
    SubmissionFactory(status=Submission.Status.REJECTED)
    assert broken_rules() == {}


def test_empty_test_name_and_word_lists_flag_nothing(legitimate, settings):
    settings.DOCUMENTS_TEST_SUBMITTERS = []
    settings.DOCUMENTS_TEST_WORDS = []

    assert offending("documents.E007") == set()
    assert offending("documents.E008") == set()


def test_ml_number_and_status_outside_the_formats_are_flagged(legitimate):
    with check_constraints_off(
        "documents_submission",
        "submission_ml_number_format",
        "submission_status_allowed",
        "submission_approved_has_approver",
    ):
        bad_number = raw_insert_submission("ML-12a")
        bad_status = raw_insert_submission("ML-900", status="lost")
    assert offending("documents.E001") == {bad_number}
    assert offending("documents.E003") == {bad_status}


def test_draft_name_and_status_outside_the_formats_are_flagged(legitimate):
    submission = legitimate.submission
    with check_constraints_off(
        "documents_publisheddraft", "draft_name_format", "draft_status_allowed", "draft_withdrawal_recorded"
    ):
        with behind_the_services(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE documents_publisheddraft SET name = 'RFC-1', status = 'gone' WHERE id = %s",
                [legitimate.pk],
            )
    assert offending("documents.E002") == {legitimate.pk}
    assert offending("documents.E004") == {legitimate.pk}
    assert submission.pk not in offending("documents.E001")


def test_rows_not_marked_production_data_are_flagged(legitimate):
    seed = SubmissionFactory()
    raw_update_submission(seed.pk, data_source=DataSource.SEED)
    illegitimate = SubmissionFactory()
    raw_update_submission(illegitimate.pk, is_legitimate=False)
    assert offending("documents.E005") == {seed.pk, illegitimate.pk}


@pytest.mark.parametrize(
    ("submitted_by", "title"),
    [
        ("Anonymous User", "Widgets"),
        ("TEST", "Widgets"),
        ("test user", "Widgets"),
        ("Grace Hopper", "A test of widgets"),
        ("Grace Hopper", "Fake-news widgets"),
        ("Grace Hopper", "Widgets (dummy)"),
        ("Sample Submitter", "Widgets"),
        ("Grace Hopper", "Lorem ipsum"),
        ("Grace Hopper", "EXAMPLE."),
        # A separator is not a disguise: an underscore splits words as a space does.
        ("Grace Hopper", "test_suite naming"),
    ],
)
def test_test_submitters_and_test_words_are_flagged(db, submitted_by, title):
    submission = SubmissionFactory(submitted_by=submitted_by, title=title)
    assert offending("documents.E007") == {submission.pk}


@pytest.mark.parametrize(
    ("submitted_by", "title"),
    [
        ("Grace Hopper", "Results of the protocol contest"),
        ("Grace Hopper", "Attestation formats"),
        ("Testa Rossa", "Widgets"),
        ("Grace Hopper", "Examples of fakery? no: sampled data"),
        ("Grace Hopper", "Protest2024 testing"),
    ],
)
def test_test_words_inside_other_words_are_not_flagged(db, submitted_by, title):
    SubmissionFactory(submitted_by=submitted_by, title=title)
    assert offending("documents.E007") == set()


def test_test_lists_come_from_settings(db, settings):
    settings.DOCUMENTS_TEST_SUBMITTERS = ["QA Bot"]
    settings.DOCUMENTS_TEST_WORDS = ["widget"]
    bot = SubmissionFactory(submitted_by="qa bot", title="Interop")
    widget = SubmissionFactory(title="Widget guide")
    SubmissionFactory(title="A test")
    assert offending("documents.E007") == {bot.pk, widget.pk}


def test_a_draft_of_a_test_submission_is_flagged(legitimate):
    draft = published_draft(submitted_by="Test User")
    assert offending("documents.E008") == {draft.pk}


def test_draft_relations_are_checked(legitimate, superuser):
    lone = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(lone.pk, status=Submission.Status.PUBLISHED)
    not_published = raw_insert_submission("ML-700")
    orphan_target = raw_insert_submission("ML-701", status="approved", approved_by_id=superuser.pk)
    draft_of_unpublished = raw_insert_draft(
        "rfc700", submission_id=not_published, published_by_id=superuser.pk
    )
    assert offending("documents.E011") == {lone.pk}
    assert offending("documents.E010") == {draft_of_unpublished}
    assert orphan_target not in offending("documents.E011")


def test_a_draft_of_a_quarantined_submission_is_flagged(legitimate):
    raw_update_submission(legitimate.submission.pk, data_source=DataSource.QUARANTINE)
    assert offending("documents.E012") == {legitimate.pk}
    assert offending("documents.W001") == {legitimate.submission.pk}
    assert legitimate.submission.pk not in offending("documents.E011")


def test_rows_created_by_raw_sql_have_no_provenance(legitimate, superuser):
    submission = raw_insert_submission("ML-800", status="published", approved_by_id=superuser.pk)
    draft = raw_insert_draft("rfc800", submission_id=submission, published_by_id=superuser.pk)
    assert offending("documents.E020") == {submission}
    assert offending("documents.E021") == {draft}


def test_rows_saved_by_a_script_without_a_user_have_no_provenance(legitimate, superuser):
    draft = script_publishes_without_user("ML-801", published_by=superuser, name="rfc801")
    assert offending("documents.E020") == {draft.submission_id}
    assert offending("documents.E021") == {draft.pk}


def test_a_draft_whose_creation_names_someone_else_is_flagged(legitimate):
    someone_else = SuperuserFactory()
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_publisheddraft SET published_by_id = %s WHERE id = %s",
            [someone_else.pk, legitimate.pk],
        )
    assert offending("documents.E021") == {legitimate.pk}
    assert offending("documents.E023") == {legitimate.pk}


def test_a_status_flipped_without_a_history_record_is_flagged(legitimate):
    approved = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(approved.pk, status=Submission.Status.PUBLISHED)
    assert offending("documents.E022") == {approved.pk}


def test_rows_without_history_are_not_reported_as_changed_without_history(legitimate):
    raw = raw_insert_submission("ML-802")
    assert raw in offending("documents.E020")
    assert raw not in offending("documents.E022")


def test_quarantined_rows_are_left_out_of_the_rules(legitimate):
    fake = SubmissionFactory(submitted_by="Test User")
    raw_update_submission(fake.pk, data_source=DataSource.QUARANTINE, is_legitimate=False)
    assert fake.pk not in offending("documents.E005")
    assert fake.pk not in offending("documents.E007")
    assert offending("documents.W001") == {fake.pk}


def test_silenced_rules_are_not_run(db, settings):
    settings.DEPLOYGUARD_SILENCED_RULES = ["documents.E007"]
    ids = {rule.id for rule in default_registry.select()}
    assert "documents.E007" not in ids
    assert "documents.E001" in ids


def test_a_table_is_checked_in_one_pass_plus_one_query_per_failing_rule(
    legitimate, django_assert_num_queries
):
    SubmissionFactory(submitted_by="Test User")
    rules = [rule for rule in default_registry.rules.values() if rule.model is Submission]
    with django_assert_num_queries(2):
        results = evaluate(rules)
    assert {r.rule.id for r in results if r.failed} == {"documents.E007"}


def test_evaluate_restricted_to_rows_checks_only_those(legitimate):
    fake = SubmissionFactory(submitted_by="Test User")
    rules = [rule for rule in default_registry.rules.values() if rule.model is Submission]
    assert not any(r.failed for r in evaluate(rules, pks=[legitimate.submission.pk]))
    assert [r.sample_pks for r in evaluate(rules, pks=[fake.pk]) if r.failed] == [[fake.pk]]


def test_drafts_are_checked_with_their_submission(legitimate):
    assert PublishedDraft.objects.count() == 1
