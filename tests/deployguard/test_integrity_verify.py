from __future__ import annotations

import json

import pytest

from deployguard.management.commands.verify_integrity import VIOLATIONS_FOUND
from documents.models import Submission
from tests.documents.fakes import raw_insert_submission, raw_update_submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import behind_the_services, rewriting_history, run_command


@pytest.fixture
def clean(db):
    return published_draft(title="Interoperable widgets")


def test_a_clean_database_exits_zero(clean):
    stdout, stderr, status = run_command("verify_integrity")
    assert status == 0, stdout + stderr
    assert "0 errors, 0 warnings broken" in stdout


def test_json_report_has_one_entry_per_rule(clean):
    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")
    report = json.loads(stdout)
    assert status == 0
    assert report["ok"] is True
    assert report["baseline"] is None
    first = report["rules"][0]
    assert set(first) == {
        "id",
        "severity",
        "model",
        "description",
        "count",
        "sample_pks",
        "samples",
        "duration_s",
    }
    assert all(rule["count"] == 0 for rule in report["rules"])


def test_warnings_fail_only_at_fail_level_warning(clean):
    fake = SubmissionFactory(submitted_by="Test User")
    raw_update_submission(fake.pk, data_source="quarantine", is_legitimate=False)
    assert run_command("verify_integrity")[2] == 0
    stdout, _stderr, status = run_command("verify_integrity", "--fail-level", "warning")
    assert status == 1
    assert "documents.W001" in stdout


def test_rule_and_silence_choose_the_rules(clean):
    SubmissionFactory(submitted_by="Test User")
    assert run_command("verify_integrity", "--silence", "documents.E007")[2] == 0
    stdout, _stderr, status = run_command("verify_integrity", "--rule", "documents.E007", "--format", "json")
    assert status == 1
    assert [rule["id"] for rule in json.loads(stdout)["rules"]] == ["documents.E007"]


def test_silenced_by_settings(clean, settings):
    SubmissionFactory(submitted_by="Test User")
    settings.DEPLOYGUARD_SILENCED_RULES = ["documents.E007"]
    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")
    assert status == 0
    assert json.loads(stdout)["silenced"] == ["documents.E007"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rule", "documents.E999"), "Unknown rule id documents.E999"),
        (("--silence", "nope"), "Unknown rule id nope"),
        (("--fail-level", "fatal"), "invalid choice: 'fatal'"),
        (("--format", "xml"), "invalid choice: 'xml'"),
        (("--sample", "-1"), "--sample must be 0 or more"),
        (("--baseline", "/nonexistent/baseline.jsonl"), "Cannot read the baseline"),
    ],
)
def test_misuse_exits_two_with_one_line(db, args, message):
    stdout, stderr, status = run_command("verify_integrity", *args)
    assert status == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert stdout == ""


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json\n",
        '{"format": "something-else"}\n',
        '{"format": "deployguard-baseline", "version": 99}\n',
    ],
)
def test_an_unreadable_baseline_exits_two(db, tmp_path, content):
    path = tmp_path / "baseline.jsonl"
    path.write_text(content)
    _stdout, stderr, status = run_command("verify_integrity", "--baseline", str(path))
    assert status == 2
    assert len(stderr.strip().splitlines()) == 1


def test_a_baseline_from_another_database_exits_two(db, tmp_path):
    path = tmp_path / "baseline.jsonl"
    path.write_text('{"format": "deployguard-baseline", "version": 1, "vendor": "oracle", "tables": {}}\n')
    _stdout, stderr, status = run_command("verify_integrity", "--baseline", str(path))
    assert status == 2
    assert "saved on oracle" in stderr


def test_baseline_of_an_unchanged_database_compares_equal(clean, tmp_path):
    path = tmp_path / "baseline.jsonl"
    assert run_command("verify_integrity", "--save-baseline", str(path))[2] == 0
    stdout, stderr, status = run_command("verify_integrity", "--baseline", str(path), "--format", "json")
    assert status == 0, stderr
    report = json.loads(stdout)["baseline"]
    assert report["ok"] is True
    assert {label: table["equal"] for label, table in report["tables"].items()} == {
        "documents.submission": True,
        "documents.publisheddraft": True,
    }


def test_baseline_detects_an_added_a_removed_and_a_changed_row(clean, tmp_path):
    kept, removed, changed = SubmissionFactory.create_batch(3)
    path = tmp_path / "baseline.jsonl"
    run_command("verify_integrity", "--save-baseline", str(path))
    added = raw_insert_submission("ML-950")
    raw_update_submission(changed.pk, title="Rewritten behind the audit trail")
    with rewriting_history():
        Submission.history.filter(id=removed.pk).delete()
    from django.db import connection

    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM documents_submission WHERE id = %s", [removed.pk])

    stdout, _stderr, status = run_command("verify_integrity", "--baseline", str(path), "--format", "json")

    assert status == 1
    table = json.loads(stdout)["baseline"]["tables"]["documents.submission"]
    assert table["equal"] is False
    assert (table["count_then"], table["count_now"]) == (4, 4)
    assert table["added"] == {"count": 1, "pks": [added]}
    assert table["removed"] == {"count": 1, "pks": [removed.pk]}
    assert table["changed"] == {"count": 1, "pks": [changed.pk]}
    assert json.loads(stdout)["baseline"]["tables"]["documents.publisheddraft"]["equal"] is True

    stdout, _stderr, _status = run_command("verify_integrity", "--baseline", str(path))
    assert f"added 1: {added}" in stdout
    assert f"removed 1: {removed.pk}" in stdout
    assert f"changed 1: {changed.pk}" in stdout
    assert kept.pk not in table["changed"]["pks"]


def test_a_baseline_that_cannot_be_written_exits_two(clean, tmp_path):
    _stdout, stderr, status = run_command(
        "verify_integrity", "--save-baseline", str(tmp_path / "missing-dir" / "b.jsonl")
    )
    assert status == 2
    assert "Cannot write the baseline" in stderr


def _make_fakes(count: int) -> None:
    for i in range(count):
        SubmissionFactory(submitted_by="Test User", title=f"Fake {i}")
        raw_insert_submission(f"ML-{960 + i}")


@pytest.mark.parametrize("fakes", [1, 6])
def test_verify_integrity_query_count_does_not_grow_with_rows(clean, fakes, django_assert_max_num_queries):
    _make_fakes(fakes)
    # Per table: one aggregate pass, one sample query per failing rule, one origin query
    # and one user-name query; plus the savepoint noise of the test transaction. Then the
    # row-count check (the recorded counts, a count per checked table) and, since the tables
    # grew, recording them (lock, a count per table, one insert): 11 more, however many rows;
    # and per table with failing rules, its sampled rows' latest history records and values (2).
    with django_assert_max_num_queries(30):
        _stdout, _stderr, status = run_command("verify_integrity", "--format", "json")
    assert status == 1


def test_scrub_dry_run_query_count_does_not_grow_with_rows(clean, django_assert_max_num_queries):
    _make_fakes(6)
    # 4, plus a count per repairable rule (documents.E022, E023) to offer --repair.
    with django_assert_max_num_queries(6):
        _stdout, _stderr, status = run_command("scrub_fake_data")
    assert status == 0


def test_samples_show_the_natural_key_beside_the_pk_in_the_table_and_in_json(clean):
    fake = SubmissionFactory(submitted_by="Test User")
    stdout, _stderr, status = run_command("verify_integrity", "--rule", "documents.E007")
    assert status == 1
    row = next(line for line in stdout.splitlines() if line.startswith("documents.E007 "))
    assert row.split()[:5] == ["documents.E007", "error", "1", str(fake.pk), f"({fake.ml_number})"]
    assert f"\n  {fake.pk} ({fake.ml_number}): created by " in stdout

    stdout, _stderr, status = run_command("verify_integrity", "--rule", "documents.E007", "--format", "json")
    [rule] = json.loads(stdout)["rules"]
    assert rule["sample_pks"] == [fake.pk]
    assert [(s["pk"], s["natural_key"]) for s in rule["samples"]] == [(fake.pk, fake.ml_number)]


def test_violations_are_reported_on_stdout_with_exit_one_not_as_an_error(clean):
    SubmissionFactory(submitted_by="Test User")
    stdout, stderr, status = run_command("verify_integrity")
    assert (stderr, status) == ("", 1)
    assert stdout.endswith(f"1 errors, 0 warnings broken (fail level error).\n{VIOLATIONS_FOUND}\n")
    stdout, stderr, status = run_command("verify_integrity", "--format", "json")
    assert (stderr, status) == ("", 1)
    assert json.loads(stdout)["ok"] is False
