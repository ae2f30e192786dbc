"""The integrity watch: each new violation reported once, quarantined on request, its last run shown."""

from __future__ import annotations

import pytest
from django.core import mail
from django_tasks_db.models import DBTaskResult

from deployguard.jobs import schedule, watch
from deployguard.models import IntegrityWatchRun, ScrubRun
from documents.models import Submission
from tests.documents.fakes import raw_insert_submission

WATCH_PATH = "deployguard.jobs.watch.integrity_watch"


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DEPLOYGUARD_PERIODIC_JOBS = {WATCH_PATH: 300}


def test_a_violation_is_mailed_and_logged_once_however_many_runs_see_it(db, caplog):
    pk = raw_insert_submission("ML-500", match_keys=True)

    first = watch.watch()
    second = watch.watch()

    assert first.status == second.status == IntegrityWatchRun.Status.VIOLATIONS
    assert first.new == {"documents.E020": [str(pk)]}
    assert second.new == {}
    assert [message.subject for message in mail.outbox] == [
        "[Django] Integrity watch: 1 new violation(s) of documents.E020"
    ]
    assert f"documents.submission {pk}" in mail.outbox[0].body
    logged = [r.getMessage() for r in caplog.records if r.name == "deployguard.monitoring"]
    assert (
        len([line for line in logged if f"documents.submission {pk} newly breaks documents.E020" in line])
        == 1
    )


def test_only_the_rows_new_since_the_last_run_are_reported(db):
    first_pk = raw_insert_submission("ML-501", match_keys=True)
    watch.watch()
    second_pk = raw_insert_submission("ML-502", match_keys=True)

    run = watch.watch()

    assert run.counts["documents.E020"] == 2
    assert run.new == {"documents.E020": [str(second_pk)]}
    assert str(first_pk) in run.offending["documents.E020"]
    assert mail.outbox[-1].subject == "[Django] Integrity watch: 1 new violation(s) of documents.E020"


def test_a_clean_database_mails_nothing_and_records_a_clean_run(db):
    run = watch.watch()

    assert run.status == IntegrityWatchRun.Status.CLEAN
    assert mail.outbox == []
    assert watch.last_run()["status"] == "clean"


def test_with_quarantine_on_violation_a_new_violation_is_quarantined_in_a_watch_run(db, settings):
    settings.DEPLOYGUARD_QUARANTINE_ON_VIOLATION = True
    pk = raw_insert_submission("ML-503", match_keys=True)

    run = watch.watch()

    quarantine = ScrubRun.objects.get(pk=run.quarantine_run)
    assert quarantine.kind == ScrubRun.Kind.WATCH
    assert Submission.objects.get(pk=pk).data_source == "quarantine"
    assert watch.last_run()["quarantine_run"] == quarantine.pk


def test_last_run_is_none_before_the_first_run_then_summarises_the_latest(db):
    assert watch.last_run() is None
    raw_insert_submission("ML-504", match_keys=True)

    watch.watch()

    last = watch.last_run()
    assert (last["status"], last["new"], last["counts"]["documents.E020"]) == (
        "violations",
        {"documents.E020": 1},
        1,
    )


def test_the_watch_creates_no_document(db):
    raw_insert_submission("ML-505", match_keys=True)
    before = Submission.objects.count()

    watch.integrity_watch.call()

    assert Submission.objects.count() == before


def test_workers_starting_together_queue_the_watch_once(transactional_db):
    assert schedule.ensure_scheduled("default") == [WATCH_PATH]
    assert schedule.ensure_scheduled("default") == []

    assert DBTaskResult.objects.filter(task_path=WATCH_PATH, status="READY").count() == 1


def test_a_finished_watch_queues_its_next_run_once(transactional_db):
    schedule.ensure_scheduled("default")
    row = DBTaskResult.objects.get(task_path=WATCH_PATH)
    row.status = "SUCCESSFUL"
    row.save()

    assert schedule.after_run(row) is True
    assert schedule.after_run(row) is False

    queued = DBTaskResult.objects.get(task_path=WATCH_PATH, status="READY")
    assert 299 <= (queued.run_after - row.enqueued_at).total_seconds() <= 600


def test_a_db_worker_of_another_backend_than_the_default_schedules_nothing(transactional_db):
    # With Celery as the default backend, Celery beat schedules the watch, never db_worker too.
    assert schedule.ensure_scheduled("database") == []

    assert not DBTaskResult.objects.filter(task_path=WATCH_PATH).exists()
