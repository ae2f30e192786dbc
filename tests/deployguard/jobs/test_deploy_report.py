"""deploy_safe's report names the jobs that met its freeze, by task."""

from __future__ import annotations

from tests.deploy_apps.support import Scratch
from tests.deployguard.jobs.workers import Workers, enqueue, groups, jobs
from tests.reliability.support_deploy import finish, reach, release, start_deploy
from tests.waiting import wait_until

TASK = "tests.deployguard.jobs.tasks.add_group"


def test_a_job_that_writes_during_deploy_safe_is_refused_put_back_and_named_in_the_report(
    scratch: Scratch, workers: Workers
):
    # A worker that trusts a cached "off" for a minute claims a job in the middle of the deploy,
    # as one that read the state just before it would; deploy_safe waits for no cache.
    worker = workers.db_worker(DEPLOYGUARD_STATE_CACHE_SECONDS="60")
    enqueue(scratch, ("add_group", ["before"]))
    wait_until(lambda: groups(scratch) == ["before"], "the worker to read deploy mode off")
    deploy = start_deploy(scratch, apps="gate", pause_at=("migrate",))
    try:
        reach(deploy, scratch, "migrate")
        enqueue(scratch, ("add_group", ["during"]))
        wait_until(lambda: "Holding jobs" in worker.output(), "the job to meet the freeze")
    finally:
        release(scratch, "migrate")
    result = finish(deploy)

    assert result.returncode == 0, result.stdout + result.stderr
    job_writes = [w for w in scratch.report()["blocked_writes"] if w.get("source") == "job"]
    assert [(w["task"], w["exception"]) for w in job_writes] == [(TASK, "DeployModeActive")]
    assert "auth_group" in job_writes[0]["message"]
    wait_until(lambda: groups(scratch) == ["before", "during"], "the put-back job to run after the deploy")
    assert [status for _, status, _ in jobs(scratch)] == ["SUCCESSFUL", "SUCCESSFUL"]
