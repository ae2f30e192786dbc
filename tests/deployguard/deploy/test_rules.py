"""The integrity rules around a deploy: counted once before it, and reused after it only while
what they read is provably unchanged."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connection, transaction

from deployguard import fingerprints, written
from deployguard.deploy import rules
from deployguard.deploy.rules import RulesBefore
from deployguard.deploy.steps import Alongside
from deployguard.integrity import default_registry, evaluate
from tests.deployguard.support import fingerprints_as_frozen


def _jit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        return cursor.fetchone()[0]


@pytest.mark.postgresql
def test_integrity_rules_run_with_jit_off_and_the_session_keeps_its_setting(transactional_db):
    before = _jit()

    with rules.without_jit():
        assert _jit() == "off"

    assert _jit() == before


def _after_pre_check(alongside: Alongside) -> tuple[RulesBefore, dict, set[str]]:
    """The pre-check's rules, every table fingerprinted again, and every table found unchanged."""
    before = rules.count_before(alongside=alongside)
    frozen = fingerprints.take()
    return before, frozen, set(frozen)


@pytest.mark.postgresql
def test_the_post_check_reuses_the_rules_answer_only_while_what_they_read_is_unchanged(
    transactional_db, alongside
):
    from tests.factories import published_draft

    published_draft(ml_number="ML-001")
    before, frozen, unchanged = _after_pre_check(alongside)
    types = fingerprints.types_now(before.inputs)

    # Each model's rules ran on a connection of their own, in the one snapshot: all are counted.
    assert before.counts == dict.fromkeys((rule.id for rule in default_registry.select()), 0)
    assert list(before.counts) == [rule.id for rule in default_registry.select()]  # as reported
    # The rules' SQL names these tables (the submission's and draft's, their history, the users).
    assert {
        "documents_submission", "documents_publisheddraft", "documents_historicalsubmission",
        "documents_historicalpublisheddraft",
    } <= set(before.inputs)  # fmt: skip
    assert rules.would_see_changes(before, frozen, unchanged, types) == ""

    unchanged.discard("documents_historicalsubmission")
    assert rules.would_see_changes(before, frozen, unchanged, types) == (
        "documents_historicalsubmission changed during the deploy"
    )

    unchanged.add("documents_historicalsubmission")
    (first_column, *rest), *other_columns = types["documents_submission"]
    retyped = {**types, "documents_submission": ((first_column, "text", *rest[1:]), *other_columns)}
    assert (
        rules.would_see_changes(before, frozen, unchanged, retyped)
        == "documents_submission's columns changed"
    )


@pytest.mark.postgresql
def test_a_write_between_the_pre_check_and_the_freeze_makes_the_rules_run_again(transactional_db, alongside):
    from tests.factories import SubmissionFactory

    SubmissionFactory(ml_number="ML-001")
    before, _, _ = _after_pre_check(alongside)
    SubmissionFactory(ml_number="ML-002")  # lands after the rules ran, before deploy mode is on
    frozen = fingerprints_as_frozen(before.tables)

    # Only what was written is hashed again; every other table keeps the pre-check's fingerprint.
    assert before.tables is not None
    hashed = set(frozen.tables) - set(before.tables.reused_in(frozen.tables))
    assert hashed == {"documents_submission", "documents_historicalsubmission", "auth_user"}  # and its user
    assert frozen.tables["documents_submission"].count == 2
    unchanged = set(frozen.tables)
    assert rules.would_see_changes(
        before, frozen.tables, unchanged, fingerprints.types_now(before.inputs)
    ) == ("documents_historicalsubmission changed between the pre-check and the freeze")


def test_the_rules_are_not_reused_without_their_inputs_fingerprinted(db):
    assert rules.would_see_changes(RulesBefore(None), {}, set(), {}) == "the pre-check's rules did not run"
    assert rules.would_see_changes(RulesBefore({}), {}, set(), {}) == (
        "what the rules read was not fingerprinted with them (PostgreSQL only)"
    )


@pytest.mark.postgresql
def test_the_pre_check_rules_on_other_connections_see_the_exported_snapshot_only(transactional_db):
    """A row committed after the snapshot was exported is not counted by a rule group that
    imports it, and is by the same group outside it."""
    import psycopg

    from tests.deployguard.support import database_url_for

    submission_rules = next(
        g
        for g in rules.rules_by_model(default_registry.select())
        if g[0].model._meta.model_name == "submission"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
        with psycopg.connect(database_url_for(connection.settings_dict), autocommit=True) as outsider:
            outsider.execute(  # no creation record: documents.E020
                "INSERT INTO documents_submission (ml_number, title, submitted_by, status, data_source, "
                "is_legitimate, created_at, updated_at) VALUES ('ML-900', 'T', 'Ada', 'submitted', "
                "'production', true, now(), now())"
            )
        with ThreadPoolExecutor(max_workers=1) as pool:
            counts, read = pool.submit(rules.count_in_snapshot, snapshot, submission_rules).result()
    assert counts["documents.E020"] == 0
    assert {"documents_submission", "documents_historicalsubmission"} <= read

    assert {r.rule.id: r.count for r in evaluate(submission_rules, sample_size=0)}["documents.E020"] == 1


@pytest.mark.postgresql
def test_the_pre_check_with_every_rule_silenced_counts_nothing_and_still_fingerprints(
    transactional_db, settings, alongside
):
    settings.DEPLOYGUARD_SILENCED_RULES = [rule.id for rule in default_registry.select()]

    before = rules.count_before(alongside=alongside)

    assert (before.counts, before.inputs) == ({}, {})
    assert before.tables is not None
    assert "documents_submission" in before.tables.tables


@pytest.mark.postgresql
def test_a_failing_pre_check_fingerprint_costs_the_shortcut_not_the_counts(
    transactional_db, monkeypatch, alongside
):
    def fail(**kwargs):
        raise DatabaseError("the fingerprint failed")

    monkeypatch.setattr(fingerprints, "take", fail)

    before = rules.count_before(alongside=alongside)

    assert before.counts == dict.fromkeys((rule.id for rule in default_registry.select()), 0)
    assert (before.inputs, before.tables) == ({}, None)


@pytest.mark.postgresql
def test_a_failing_rule_group_fails_the_pre_check_and_keeps_its_fingerprints(
    transactional_db, monkeypatch, alongside
):
    count_in_snapshot = rules.count_in_snapshot

    def drafts_fail(snapshot, group, **kwargs):
        if group[0].model._meta.model_name == "publisheddraft":
            raise DatabaseError('column "new_field" does not exist')
        return count_in_snapshot(snapshot, group, **kwargs)

    monkeypatch.setattr(rules, "count_in_snapshot", drafts_fail)

    before = rules.count_before(alongside=alongside)

    assert before.counts is None
    assert 'column "new_field" does not exist' in str(before.failure)
    assert before.tables is not None
    assert "documents_submission" in before.tables.tables  # the backup can reuse them


@pytest.mark.postgresql
def test_the_rules_answer_is_not_reused_when_a_table_they_read_is_not_provable(transactional_db, alongside):
    """An enum's sort order, say, changes by DDL alone: no write, no new column type name."""
    before, frozen, unchanged = _after_pre_check(alongside)
    submission = before.inputs["documents_submission"]
    unprovable = tuple((*column[:5], False, *column[6:]) for column in submission.types or ())
    before = dataclasses.replace(
        before,
        inputs={**before.inputs, "documents_submission": dataclasses.replace(submission, types=unprovable)},
    )
    types = {**fingerprints.types_now(before.inputs), "documents_submission": unprovable}

    assert rules.would_see_changes(before, frozen, unchanged, types) == (
        "documents_submission has columns whose meaning can change without a write"
    )


def test_rules_are_grouped_by_model_in_the_order_first_seen():
    registered = default_registry.select()

    groups = rules.rules_by_model(registered)

    assert [group[0].model for group in groups] == list(dict.fromkeys(rule.model for rule in registered))
    for group in groups:
        assert group == [rule for rule in registered if rule.model is group[0].model]


def test_worse_counts_more_rows_than_before_and_without_counts_any_error(db):
    error_rule = next(rule.id for rule in default_registry.select() if rule.severity == "error")
    warning_rule = next(rule.id for rule in default_registry.select() if rule.severity != "error")

    assert rules.worse({error_rule: 1, warning_rule: 0}, {error_rule: 1, warning_rule: 2}) == {
        warning_rule: 2
    }
    assert rules.worse(None, {error_rule: 1, warning_rule: 2}) == {error_rule: 1}
    assert rules.errors({error_rule: 3, warning_rule: 5}) == {error_rule: 3}


def _counted(count: int, definition: str = "CREATE TABLE t (id integer)") -> written.Mark:
    triggers = sorted(written.trigger_sql("t", operation) for operation in written.OPERATIONS)
    return written.Mark({"t": count}, {"t": (definition, *triggers)})


def test_on_sqlite_the_rules_answer_is_reused_only_while_what_they_read_is_unwritten():
    before = rules.RulesBefore({"documents.E001": 0}, mark=_counted(0), read=frozenset({"t"}))

    assert rules.would_see_changes_sqlite(before, _counted(0)) == ""
    assert rules.would_see_changes_sqlite(before, _counted(1)) == (
        "t was written (or redefined) since the pre-check ran the rules"
    )
    redefined = _counted(0, "CREATE TABLE t (id integer, extra text)")
    assert rules.would_see_changes_sqlite(before, redefined).startswith("t was written")
    uncounted = rules.RulesBefore({"documents.E001": 0})
    assert rules.would_see_changes_sqlite(uncounted, _counted(0)) == (
        "writes were not counted while the pre-check's rules ran"
    )
    assert rules.would_see_changes_sqlite(rules.RulesBefore(None), _counted(0)) == (
        "the pre-check's rules did not run"
    )
