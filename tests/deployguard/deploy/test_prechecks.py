"""The pre-checks, one function each: what fails them, with the message the operator reads."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from django.db import DatabaseError, connection
from django.utils import timezone

from deployguard import baseline, state
from deployguard.deploy import prechecks
from deployguard.integrity import default_registry
from deployguard.models import DeployRecord
from deployguard.write_paths import AuditReport, config_from_settings
from tests.utils import behind_the_services


def test_a_deploy_that_never_finished_fails_the_pre_check_and_says_to_recover(db):
    assert prechecks.no_incomplete_deploy(using="default") == prechecks.Verdict()
    started = timezone.now()
    DeployRecord.objects.create(deploy_id="d-killed", started_at=started, started_by="ops@host")

    verdict = prechecks.no_incomplete_deploy(using="default")

    assert verdict.problem == (
        f"Deploy d-killed (started {started.isoformat(timespec='seconds')} by ops@host) never finished: the "
        "process was killed. Run `manage.py deploy_safe --recover` first. Nothing was touched."
    )


def test_deploy_mode_on_already_fails_the_pre_check_naming_who_turned_it_on(db):
    assert prechecks.deploy_mode_off(using="default").problem == ""
    status = state.enable(reason="Release 42", changed_by="ops@host")

    verdict = prechecks.deploy_mode_off(using="default")

    assert verdict.problem == f"Deploy mode is already on ({status.describe()}); turn it off first."


def test_an_unwritable_backup_directory_fails_and_a_writable_one_is_reported(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    refused = prechecks.backup_directory_writable(blocker / "backups")
    allowed = prechecks.backup_directory_writable(tmp_path / "backups")

    assert refused.problem == (
        f"The backup directory {blocker / 'backups'} is not writable (Not a directory); pass --backup-dir."
    )
    assert allowed == prechecks.Verdict(detail=str(tmp_path / "backups"))
    assert list((tmp_path / "backups").iterdir()) == []  # the probe is gone


def test_the_clean_tree_check_is_skipped_when_allowed_dirty_or_outside_a_git_tree(tmp_path):
    assert prechecks.clean_git_tree(tmp_path, allow_dirty=True) == prechecks.Verdict(skipped=True)
    assert prechecks.clean_git_tree(Path("/"), allow_dirty=False) == prechecks.Verdict(skipped=True)


def test_data_migrations_named_must_be_pending(db):
    assert prechecks.data_migrations_named([], using="default") == prechecks.Verdict(skipped=True)

    verdict = prechecks.data_migrations_named(
        ["documents.0001_initial", "documents.0999_nope"], using="default"
    )

    assert verdict.problem == (
        "--allow-data-migration names no pending migration: documents.0001_initial, documents.0999_nope."
    )


def test_system_checks_and_migrations_pass_on_this_project(db):
    assert prechecks.system_checks("CRITICAL") == prechecks.Verdict()
    assert prechecks.migrations_made() == prechecks.Verdict()


def test_the_write_path_audit_fails_the_pre_check_on_a_violation_or_an_unscannable_file():
    report = AuditReport(
        config=config_from_settings(), findings=[], violations=[], files_scanned=1, seconds=0.25,
        errors=["x.py: invalid syntax"],
    )  # fmt: skip
    done: Future = Future()
    done.set_result((report, 0.25))

    verdict = prechecks.write_paths_clean(done)

    assert verdict.problem == (
        "The write-path audit found 0 violation(s) and 1 unscannable file(s): "
        "run `manage.py audit_write_paths`."
    )
    assert verdict.detail == {"seconds": 0.25, "alongside": "the pre-checks before it"}


def test_integrity_errors_fail_the_pre_check_with_every_error_rule_counted(transactional_db, alongside):
    from tests.documents.fakes import raw_insert_submission

    raw_insert_submission("ML-900")  # no creation record: documents.E020

    verdict = prechecks.integrity_before(None, using="default", alongside=alongside)

    assert verdict.detail == verdict.rules.counts
    assert verdict.detail["documents.E020"] == 1
    # Written by SQL: no match keys (documents.E007) and no creation record (documents.E020).
    assert verdict.problem.startswith(
        "Integrity errors before the deploy: documents.E007 (1), documents.E020 (1)"
    )
    assert verdict.problem.endswith("; see `manage.py verify_integrity`.")


def test_a_baseline_the_old_schema_cannot_serve_is_compared_after_migrate(
    transactional_db, tmp_path, monkeypatch, alongside
):
    from deployguard.deploy import rules
    from tests.factories import SubmissionFactory

    submission = SubmissionFactory(ml_number="ML-001")
    path = tmp_path / "baseline.jsonl"
    baseline.save(path, default_registry.models())
    real_compare = baseline.compare

    def old_schema(*args, **kwargs):
        monkeypatch.setattr(baseline, "compare", real_compare)
        raise DatabaseError('column "added_by_this_deploy" does not exist')

    monkeypatch.setattr(baseline, "compare", old_schema)

    verdict = prechecks.integrity_before(str(path), using="default", alongside=alongside)

    assert verdict.problem == ""
    assert verdict.baseline_after_migrate
    assert verdict.detail["baseline"] == (
        "compared after migrate: the old schema does not fit the models "
        '(column "added_by_this_deploy" does not exist)'
    )
    assert rules.baseline_problem(path, after_migrate=True) == ""

    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_submission SET title = 'Changed since' WHERE id = %s", [submission.pk]
        )
    assert rules.baseline_problem(path, after_migrate=True) == (
        f"The data differs from the baseline {path} (compared after migrate): "
        f"run verify_integrity --baseline {path}."
    )
