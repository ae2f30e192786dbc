"""The runner every worker shares, in this process: fail closed, refusals recorded, no double completion."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from deployguard import state
from deployguard.jobs import checks, gate, runner
from deployguard.jobs.celery_tasks import run_job
from deployguard.models import CompletedJob, RefusedJobWrite
from tests.deployguard.jobs import tasks

UNREADABLE = state.DeployModeStatus(enabled=True, source="unreadable", error="connection refused")


def test_jobs_may_not_start_while_the_deploy_mode_state_cannot_be_read(monkeypatch):
    state.clear_cache()
    monkeypatch.setattr(state, "_read", lambda: UNREADABLE)

    assert gate.closed() == UNREADABLE


def test_jobs_may_start_when_deploy_mode_is_off():
    assert gate.closed() is None


def test_a_job_refused_in_deploy_mode_is_held_with_its_writes_rolled_back(db, deploy_mode_on):
    with runner.job_transaction("default"):
        outcome = runner.run(lambda: tasks.add_group.call("refused"), label="job:test")

    assert outcome.kind == "held"
    assert outcome.describe_error()[0] == "DeployModeActive"
    assert not Group.objects.filter(name="refused").exists()


def test_a_job_that_swallows_its_refusal_is_held_all_the_same(db, deploy_mode_on):
    with runner.job_transaction("default"):
        outcome = runner.run(lambda: tasks.add_group_swallowing_refusal.call("swallowed"), label="job:test")

    assert outcome.kind == "held" and len(outcome.refusals) == 1


def test_a_job_that_fails_with_deploy_mode_off_fails(db):
    with runner.job_transaction("default"):
        outcome = runner.run(lambda: tasks.fail.call("boom"), label="job:test")

    assert outcome.kind == "failed" and str(outcome.error) == "boom"


def test_a_put_back_job_is_listed_with_its_task_for_the_deploy_report(db, deploy_mode_on):
    since = timezone.now() - timedelta(seconds=1)
    with runner.job_transaction("default"):
        outcome = runner.run(lambda: tasks.add_group.call("refused"), label="job:test")

    runner.record_put_back(outcome, task_path="tests.deployguard.jobs.tasks.add_group", job_id="j-1")

    (listed,) = runner.refused_writes(since=since)
    assert (listed["source"], listed["task"], listed["job_id"], listed["exception"]) == (
        "job", "tests.deployguard.jobs.tasks.add_group", "j-1", "DeployModeActive",
    )  # fmt: skip
    assert listed["where"].startswith("job tests.deployguard.jobs.tasks.add_group (")
    assert RefusedJobWrite.objects.get().deploy_id == deploy_mode_on.deploy_id


def test_a_celery_message_delivered_again_after_its_job_completed_does_not_run_it_twice(db):
    path = "tests.deployguard.jobs.tasks.add_group"

    run_job.apply(args=[path, ["once"], {}], task_id="delivered-twice", throw=True)
    run_job.apply(args=[path, ["once"], {}], task_id="delivered-twice", throw=True)

    assert list(Group.objects.values_list("name", flat=True)) == ["once"]
    assert CompletedJob.objects.get().job_id == "delivered-twice"


def test_a_celery_message_naming_something_that_is_not_a_task_is_refused(db):
    result = run_job.apply(args=["os.system", ["true"], {}], task_id="hostile")

    assert result.failed() and "is not a Django task" in str(result.result)


def test_the_job_queue_must_stay_writable_in_deploy_mode(settings):
    assert checks.check_queue_writable() == []

    settings.DEPLOYGUARD_WRITABLE_TABLES = ["django_session"]

    (error,) = checks.check_queue_writable()
    assert error.id == "deployguard.E010"
    assert error.msg == checks.QUEUE_PROTECTED.format(table="django_tasks_database_dbtaskresult")


def test_the_system_checks_pass_with_the_project_settings():
    call_command("check", "--fail-level", "ERROR")
