"""A table pass (`Rule.table_condition`, joins not probes) flags exactly what each rule flags per row."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deployguard.integrity import Rule, default_registry, evaluate, flag_rows, joins_whole_tables
from documents.integrity import DRAFT_TRACKED, SUBMISSION_TRACKED
from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.fakes import (
    raw_insert_draft,
    raw_insert_submission,
    raw_update_submission,
    script_publishes_without_user,
)
from tests.factories import SubmissionFactory, SuperuserFactory, published_draft
from tests.utils import behind_the_services, rewriting_history

# The table conditions read other tables with DISTINCT ON, which only PostgreSQL has; the
# engine uses them only there (joins_whole_tables), and SQLite runs the per-row conditions.
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="table passes run on PostgreSQL only"
)

JOINED_RULES = [rule for rule in default_registry.rules.values() if rule.table_condition]


def flagged(rule: Rule, *, table_pass: bool) -> set[Any]:
    condition = rule.scoped_condition(default_registry, table_pass=table_pass)
    return set(rule.model._base_manager.filter(condition).values_list("pk", flat=True))


def flagged_both_ways() -> dict[str, set[Any]]:
    """{rule id: the rows it flags}, after asserting that both forms flag the same rows."""
    result = {}
    for rule in JOINED_RULES:
        per_row, table = flagged(rule, table_pass=False), flagged(rule, table_pass=True)
        assert per_row == table, f"{rule.id}: per row {sorted(per_row)}, table pass {sorted(table)}"
        result[rule.id] = per_row
    return result


def set_history(table: str, history_id: int, **values: Any) -> None:
    assignments = ", ".join(f"{connection.ops.quote_name(column)} = %s" for column in values)
    with rewriting_history(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} WHERE history_id = %s",  # noqa: S608
            [*values.values(), history_id],
        )


def set_draft(pk: int, **values: Any) -> None:
    assignments = ", ".join(f"{connection.ops.quote_name(column)} = %s" for column in values)
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE documents_publisheddraft SET {assignments} WHERE id = %s",  # noqa: S608
            [*values.values(), pk],
        )


def latest_history_id(model: type, pk: int) -> int:
    return model.history.filter(id=pk).order_by("-history_id").values_list("history_id", flat=True)[0]


@pytest.fixture
def legitimate(db):
    return published_draft(title="Interoperable widgets", submitted_by="Grace Hopper")


def test_every_rule_that_reads_another_table_has_a_table_condition():
    assert {rule.id for rule in JOINED_RULES} == {
        "documents.E008",
        "documents.E010",
        "documents.E011",
        "documents.E012",
        "documents.E020",
        "documents.E021",
        "documents.E022",
        "documents.E023",
    }


def test_documents_published_through_the_services_are_flagged_by_neither_form(legitimate):
    published_draft(title="More widgets")
    SubmissionFactory(status=Submission.Status.REJECTED)
    assert flagged_both_ways() == {rule.id: set() for rule in JOINED_RULES}


SUBMISSION_CHANGES = {
    "ml_number": "ML-99999",
    "title": "Quietly retitled",
    "submitted_by": "Someone Else",
    "status": "approved",
    "data_source": "import",
    "is_legitimate": False,
    # The match keys too: SQL that hides test text by rewriting only its key is a change.
    "submitted_by_key": "grace",
    "submitted_by_bare_key": "grace",
    "title_key": "widgets",
}
DRAFT_CHANGES = {
    "name": {"name": "rfc99999"},
    "status": {"status": "withdrawn", "withdrawn_at": timezone.now(), "withdrawn_by_id": None},
    "data_source": {"data_source": "import"},
    "is_legitimate": {"is_legitimate": False},
}


@pytest.mark.parametrize(("field", "value"), SUBMISSION_CHANGES.items())
def test_a_submission_differing_from_its_latest_record_in_one_field_is_flagged_both_ways(
    legitimate, field, value
):
    assert set(SUBMISSION_CHANGES) == set(SUBMISSION_TRACKED)
    other = published_draft(title="Untouched widgets")
    raw_update_submission(legitimate.submission_id, **{field: value})

    flagged = flagged_both_ways()

    assert flagged["documents.E022"] == {legitimate.submission_id}
    assert other.submission_id not in flagged["documents.E022"]


@pytest.mark.parametrize(("field", "values"), DRAFT_CHANGES.items())
def test_a_draft_differing_from_its_latest_record_in_one_field_is_flagged_both_ways(
    legitimate, field, values
):
    assert set(DRAFT_CHANGES) | {"submission_id", "published_by_id"} == set(DRAFT_TRACKED)
    if "withdrawn_by_id" in values:  # a withdrawal must name who (not a tracked field)
        values = {**values, "withdrawn_by_id": legitimate.published_by_id}
    set_draft(legitimate.pk, **values)
    assert flagged_both_ways()["documents.E023"] == {legitimate.pk}


@pytest.mark.parametrize("field", ["submission_id", "published_by_id"])
def test_a_draft_pointing_elsewhere_than_its_latest_record_is_flagged_both_ways(legitimate, field):
    value = SubmissionFactory().pk if field == "submission_id" else SuperuserFactory().pk
    set_draft(legitimate.pk, **{field: value})
    assert legitimate.pk in flagged_both_ways()["documents.E023"]


@pytest.mark.parametrize("field", ["submission_id", "published_by_id"])
def test_a_latest_draft_record_with_a_null_foreign_key_is_flagged_both_ways(legitimate, field):
    set_history(
        "documents_historicalpublisheddraft",
        latest_history_id(PublishedDraft, legitimate.pk),
        **{field: None},
    )
    assert flagged_both_ways()["documents.E023"] == {legitimate.pk}


def test_only_the_latest_of_several_records_counts_both_ways(legitimate):
    submission = legitimate.submission
    # Created, approved, published: three records, the row equal to the last.
    assert submission.history.count() >= 3
    assert flagged_both_ways()["documents.E022"] == set()

    # Put the row back to how an older record has it: equal to a record, not to the latest.
    raw_update_submission(submission.pk, status=Submission.Status.APPROVED)
    assert flagged_both_ways()["documents.E022"] == {submission.pk}

    # An older record that differs from the row does not matter once the latest equals it.
    raw_update_submission(submission.pk, status=Submission.Status.PUBLISHED)
    oldest = submission.history.order_by("history_id").values_list("history_id", flat=True)[0]
    set_history("documents_historicalsubmission", oldest, title="Something else entirely")
    assert flagged_both_ways()["documents.E022"] == set()


def test_a_creation_record_without_a_user_or_a_reason_is_flagged_both_ways(legitimate, superuser):
    scripted = script_publishes_without_user("ML-801", published_by=superuser, name="rfc801")
    no_reason = published_draft(title="Widgets without a reason")
    creation = no_reason.submission.history.filter(history_type="+").values_list("history_id", flat=True)[0]
    set_history("documents_historicalsubmission", creation, history_change_reason="")
    null_reason = published_draft(title="Widgets with a null reason")
    creation = null_reason.submission.history.filter(history_type="+").values_list("history_id", flat=True)[0]
    set_history("documents_historicalsubmission", creation, history_change_reason=None)

    flagged = flagged_both_ways()

    assert flagged["documents.E020"] == {
        scripted.submission_id,
        no_reason.submission_id,
        null_reason.submission_id,
    }
    assert flagged["documents.E021"] == {scripted.pk}


def test_a_draft_created_by_someone_other_than_its_publisher_is_flagged_both_ways(legitimate):
    set_draft(legitimate.pk, published_by_id=SuperuserFactory().pk)
    assert flagged_both_ways()["documents.E021"] == {legitimate.pk}


def test_one_matching_creation_record_among_several_is_enough_both_ways(legitimate):
    # A second creation record naming someone else does not hide or add anything.
    creation = PublishedDraft.history.filter(id=legitimate.pk, history_type="+").get()
    someone_else = SuperuserFactory()
    with rewriting_history(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO documents_historicalpublisheddraft (id, name, status, published_at, data_source, "
            "is_legitimate, history_change_reason, submission_id, published_by_id, history_date, "
            "history_type, history_user_id, history_origin, history_deploy_id) "
            "SELECT id, name, status, published_at, data_source, is_legitimate, history_change_reason, "
            "submission_id, published_by_id, history_date, history_type, %s, history_origin, "
            "history_deploy_id FROM documents_historicalpublisheddraft WHERE history_id = %s",
            [someone_else.pk, creation.history_id],
        )
    assert flagged_both_ways()["documents.E021"] == set()

    set_draft(legitimate.pk, published_by_id=someone_else.pk)
    flagged = flagged_both_ways()
    assert flagged["documents.E021"] == set()  # the second record names the new publisher
    assert flagged["documents.E023"] == {legitimate.pk}  # the latest record does not


def test_rows_without_any_history_are_flagged_alike(legitimate, superuser):
    submission = raw_insert_submission("ML-800", status="published", approved_by_id=superuser.pk)
    draft = raw_insert_draft("rfc800", submission_id=submission, published_by_id=superuser.pk)

    flagged = flagged_both_ways()

    assert flagged["documents.E020"] == {submission}
    assert flagged["documents.E021"] == {draft}
    assert submission not in flagged["documents.E022"]
    assert draft not in flagged["documents.E023"]


def test_relations_to_submissions_are_flagged_both_ways(legitimate, superuser):
    test_draft = published_draft(submitted_by="Test User")
    lone = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(lone.pk, status=Submission.Status.PUBLISHED)
    not_published = raw_insert_submission("ML-700")
    draft_of_unpublished = raw_insert_draft(
        "rfc700", submission_id=not_published, published_by_id=superuser.pk
    )
    seed = published_draft(title="Seeded widgets")
    raw_update_submission(seed.submission_id, data_source=DataSource.SEED)
    quarantined_draft = published_draft(title="Set-aside widgets")
    set_draft(quarantined_draft.pk, data_source=DataSource.QUARANTINE)

    flagged = flagged_both_ways()

    # The submission written by SQL has no match keys: its text was never checked.
    assert flagged["documents.E008"] == {test_draft.pk, draft_of_unpublished}
    assert flagged["documents.E010"] == {draft_of_unpublished}
    assert flagged["documents.E011"] == {lone.pk, quarantined_draft.submission_id}
    assert flagged["documents.E012"] == {seed.pk}


def test_a_draft_whose_submission_is_missing_is_flagged_both_ways(legitimate, superuser):
    # The foreign key is checked at commit: inside a transaction a draft can point at nothing.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    orphan = raw_insert_draft("rfc701", submission_id=10**9, published_by_id=superuser.pk)

    try:
        flagged = flagged_both_ways()
    finally:  # the test's rollback still checks deferred constraints
        with behind_the_services(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM documents_publisheddraft WHERE id = %s", [orphan])

    assert flagged["documents.E010"] == {orphan}
    assert orphan not in flagged["documents.E008"] | flagged["documents.E012"]


def test_the_pass_counts_and_samples_what_the_rules_flag_per_row(legitimate, superuser):
    published_draft(submitted_by="Test User")
    script_publishes_without_user("ML-801", published_by=superuser, name="rfc801")
    raw_insert_submission("ML-802")
    raw_update_submission(legitimate.submission_id, title="Quietly retitled")
    set_draft(legitimate.pk, name="rfc99999")
    assert joins_whole_tables(connection.alias)

    results = evaluate(default_registry.select(), sample_size=2)

    for result in results:
        per_row = sorted(result.rule.offending().values_list("pk", flat=True))
        assert (result.rule.id, result.count, result.sample_pks) == (
            result.rule.id,
            len(per_row),
            per_row[:2],
        )


def test_the_pass_joins_other_tables_instead_of_probing_them_per_row(legitimate):
    rules = default_registry.select()
    with CaptureQueriesContext(connection) as captured:
        evaluate(rules, sample_size=0)
    passes = [query["sql"] for query in captured.captured_queries]
    assert len(passes) == 2
    for sql in passes:
        assert "EXISTS" not in sql
        assert "LEFT OUTER JOIN" in sql


def test_flag_rows_names_the_rules_each_row_breaks_per_row(legitimate, superuser):
    published_draft(submitted_by="Test User")
    script_publishes_without_user("ML-801", published_by=superuser, name="rfc801")
    raw_update_submission(legitimate.submission_id, title="Quietly retitled")
    rules = default_registry.select()

    for model in (Submission, PublishedDraft):
        expected: dict[Any, list[str]] = {}
        for rule in rules:
            if rule.model is model:
                for pk in sorted(rule.offending().values_list("pk", flat=True)):
                    expected.setdefault(pk, []).append(rule.id)
        assert flag_rows(rules, model) == dict(sorted(expected.items()))
