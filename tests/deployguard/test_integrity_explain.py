from __future__ import annotations

from tests.documents.fakes import raw_insert_submission, script_publishes_without_user
from tests.factories import published_draft
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


def test_explain_row_misuse_exits_two(db):
    for args, message in [
        (("documents.nothing", "1"), "Unknown model 'documents.nothing'"),
        (("documents.submission", "abc"), "is not a primary key"),
        (("documents.submission", "12345"), "No documents.submission with primary key 12345"),
        (("documents.submission",), "the following arguments are required: pk"),
    ]:
        _stdout, stderr, status = run_command("explain_row", *args)
        assert status == 2, args
        assert message in stderr
        assert len(stderr.strip().splitlines()) == 1
