from __future__ import annotations

from documents.models import Submission
from tests.documents.fakes import raw_insert_submission, raw_update_submission, script_publishes_without_user
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command


def test_explain_row_shows_history_with_user_reason_and_origin(db):
    draft = published_draft()
    stdout, stderr, status = run_command("explain_row", "documents.publisheddraft", str(draft.pk))
    assert status == 0, stderr
    assert f"documents.publisheddraft {draft.pk}: {draft.name}" in stdout
    assert "Not quarantined." in stdout
    assert f"created  user={draft.published_by.get_username()}  reason=Ready  origin=process:" in stdout
    assert "Rules broken now:\n  none" in stdout


def test_explain_row_says_a_raw_sql_row_has_no_history(db):
    pk = raw_insert_submission("ML-990")
    stdout, _stderr, status = run_command("explain_row", "documents.submission", str(pk))
    assert status == 0
    assert "none: the row was written outside the ORM" in stdout
    assert "documents.E020" in stdout


def test_explain_row_shows_the_quarantine_run(db, superuser, settings):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 1
    draft = script_publishes_without_user("ML-991", published_by=superuser, name="rfc991")
    run_command("scrub_fake_data", "--apply")
    stdout, _stderr, _status = run_command("explain_row", "documents.submission", str(draft.submission_id))
    assert "Quarantined by run " in stdout
    assert "user=NONE" in stdout
    assert "reason=Quarantined by deployguard run" in stdout


NOT_FOUND = "No documents.submission with primary key or ML number"


def test_explain_row_misuse_exits_two(db):
    for args, message in [
        (("documents.nothing", "1"), "Unknown model 'documents.nothing'"),
        (("documents.submission", "abc"), f"{NOT_FOUND} 'abc'"),
        (("documents.submission", "12345"), f"{NOT_FOUND} '12345'"),
        (("documents.submission", "ML-404"), f"{NOT_FOUND} 'ML-404'"),
        (("documents.submission", "3", "--by", "key"), "No documents.submission with ML number '3'"),
        (("documents.submission",), "the following arguments are required: KEY"),
    ]:
        _stdout, stderr, status = run_command("explain_row", *args)
        assert status == 2, args
        assert message in stderr
        assert len(stderr.strip().splitlines()) == 1


def test_explain_row_finds_a_row_by_its_natural_key(db):
    draft = published_draft()
    by_name, _stderr, status = run_command("explain_row", "documents.publisheddraft", draft.name)
    assert status == 0
    assert by_name == run_command("explain_row", "documents.publisheddraft", str(draft.pk))[0]
    stdout, _stderr, status = run_command("explain_row", "documents.submission", draft.submission.ml_number)
    assert status == 0
    row = draft.submission
    assert stdout.startswith(f"documents.submission {row.pk}: {row.ml_number}: {row.title}\n")


def test_explain_row_finds_a_raw_sql_row_by_its_ml_number(db):
    pk = raw_insert_submission("ML-990")
    stdout, _stderr, status = run_command("explain_row", "documents.submission", "ML-990")
    assert status == 0
    assert stdout.startswith(f"documents.submission {pk}: ML-990: ")


def test_explain_row_refuses_a_key_that_is_one_rows_pk_and_anothers_natural_key(db, monkeypatch):
    # Natural keys here never look like primary keys; a model whose key could is refused, not guessed.
    first, second = SubmissionFactory(), SubmissionFactory()
    monkeypatch.setattr(Submission, "natural_key_field", "submitted_by")
    monkeypatch.setitem(Submission._meta.get_field("submitted_by").__dict__, "unique", True)
    raw_update_submission(second.pk, submitted_by=str(first.pk))
    _stdout, stderr, status = run_command("explain_row", "documents.submission", str(first.pk))
    assert status == 2
    assert stderr == (
        f"CommandError: '{first.pk}' is the primary key of one documents.submission and the submitted by "
        f"of another ({second.pk}): pass --by pk or --by key.\n"
    )
    assert run_command("explain_row", "documents.submission", str(first.pk), "--by", "pk")[0].startswith(
        f"documents.submission {first.pk}: {first.ml_number}"
    )
    assert run_command("explain_row", "documents.submission", str(first.pk), "--by", "key")[0].startswith(
        f"documents.submission {second.pk}: {second.ml_number}"
    )
