"""db_worker processes against a scratch database: held in deploy mode, put back on the freeze, never lost."""

from __future__ import annotations

import time

from tests.deploy_apps.support import Scratch
from tests.deployguard.jobs.workers import Workers, deploy_mode, enqueue, groups, jobs, query
from tests.waiting import wait_until

DONE = "SUCCESSFUL"
SWITCHED_ON = "SELECT count(*) FROM deployguard_deploymodestate WHERE enabled"


def all_finished(scratch: Scratch, count: int) -> bool:
    rows = jobs(scratch)
    return len(rows) == count and all(status in ("SUCCESSFUL", "FAILED") for _, status, _ in rows)


def refused(scratch: Scratch) -> list[tuple[str, str]]:
    return query(scratch, "SELECT task_path, exception FROM deployguard_refusedjobwrite ORDER BY id")


def test_jobs_queued_in_deploy_mode_wait_and_then_run_in_the_order_they_were_queued(
    scratch: Scratch, workers: Workers
):
    deploy_mode(scratch, "on")
    worker = workers.db_worker()
    enqueue(scratch, *[("add_group", [f"held-{n}"]) for n in range(5)])
    wait_until(lambda: "Holding jobs" in worker.output(), "the worker to hold")
    assert [status for _, status, _ in jobs(scratch)] == ["READY"] * 5
    assert groups(scratch) == []

    deploy_mode(scratch, "off")

    wait_until(lambda: all_finished(scratch, 5), "the held jobs to run")
    assert [status for _, status, _ in jobs(scratch)] == [DONE] * 5
    assert groups(scratch) == [f"held-{n}" for n in range(5)]


def test_a_job_running_when_deploy_mode_goes_on_finishes_before_the_switch_returns(
    scratch: Scratch, workers: Workers
):
    started, go = scratch.directory / "started", scratch.directory / "go"
    workers.db_worker()
    enqueue(scratch, ("add_group_then_wait", ["in-flight", str(started), str(go)]))
    wait_until(started.exists, "the job to write and wait")
    on = workers.manage("deploy_mode", "on", "--reason", "a job is running")
    if scratch.url.startswith("sqlite:"):
        # The job holds SQLite's one write lock: the switch waits for it to end. Whatever the
        # machine's speed, it cannot have returned; the pause only lets it start.
        time.sleep(2)
    else:  # the switch is on, and its drain waits for the job's open transaction
        wait_until(lambda: query(scratch, SWITCHED_ON)[0][0] == 1, "deploy mode to be on")
    assert on.alive(), on.output()

    go.touch()

    assert on.process.wait(timeout=120) == 0, on.output()
    assert jobs(scratch) == [("add_group_then_wait", DONE, "in-flight")]
    assert groups(scratch) == ["in-flight"]


def stale_worker(workers: Workers, scratch: Scratch):
    """A worker that trusts a cached "off" for a minute: it claims jobs after the switch, as one
    that read the state a moment before it would."""
    worker = workers.db_worker(DEPLOYGUARD_STATE_CACHE_SECONDS="60")
    enqueue(scratch, ("add_group", ["before"]))
    wait_until(lambda: groups(scratch) == ["before"], "the worker to read deploy mode off and run a job")
    return worker


def test_a_job_claimed_on_a_stale_off_meets_the_freeze_is_put_back_and_runs_after_the_deploy(
    scratch: Scratch, workers: Workers
):
    worker = stale_worker(workers, scratch)
    deploy_mode(scratch, "on")

    enqueue(scratch, ("add_group", ["during"]))
    wait_until(lambda: refused(scratch), "the job to meet the freeze")
    wait_until(lambda: "Holding jobs" in worker.output(), "the worker to hold")
    assert jobs(scratch)[-1] == ("add_group", "READY", None)  # put back, not failed
    assert groups(scratch) == ["before"]
    assert refused(scratch) == [("tests.deployguard.jobs.tasks.add_group", "DeployModeActive")]

    deploy_mode(scratch, "off")

    wait_until(lambda: all_finished(scratch, 2), "the put-back job to run")
    assert jobs(scratch) == [("add_group", DONE, "before"), ("add_group", DONE, "during")]
    assert groups(scratch) == ["before", "during"]


def test_a_job_that_swallows_its_refusal_is_put_back_all_the_same_and_completes_once(
    scratch: Scratch, workers: Workers
):
    stale_worker(workers, scratch)
    deploy_mode(scratch, "on")

    enqueue(scratch, ("add_group_swallowing_refusal", ["swallowed"]))
    wait_until(lambda: refused(scratch), "the job to meet the freeze")
    assert jobs(scratch)[-1] == ("add_group_swallowing_refusal", "READY", None)
    deploy_mode(scratch, "off")

    wait_until(lambda: all_finished(scratch, 2), "the put-back job to run")
    assert jobs(scratch)[-1] == ("add_group_swallowing_refusal", DONE, "swallowed")
    assert groups(scratch) == ["before", "swallowed"]


def test_a_worker_killed_mid_job_leaves_the_job_queued_with_nothing_written(
    scratch: Scratch, workers: Workers
):
    started, go = scratch.directory / "started", scratch.directory / "go"
    doomed = workers.db_worker()
    enqueue(scratch, ("add_group_then_wait", ["once", str(started), str(go)]))
    wait_until(started.exists, "the job to write and wait")

    doomed.kill()  # SIGKILL, its transaction open

    assert jobs(scratch) == [("add_group_then_wait", "READY", None)]
    assert groups(scratch) == []
    go.touch()
    workers.db_worker()
    wait_until(lambda: all_finished(scratch, 1), "another worker to run the job")
    assert jobs(scratch) == [("add_group_then_wait", DONE, "once")]
    assert groups(scratch) == ["once"]


def test_a_worker_started_with_deploy_mode_forced_on_picks_up_nothing(scratch: Scratch, workers: Workers):
    frozen = workers.db_worker(DEPLOYMENT_MODE="true")
    enqueue(scratch, ("add_group", ["later"]))
    wait_until(lambda: "Holding jobs" in frozen.output(), "the frozen worker to hold")
    assert "DEPLOYMENT_MODE=true" in frozen.output()
    assert jobs(scratch) == [("add_group", "READY", None)]

    workers.db_worker()
    wait_until(lambda: all_finished(scratch, 1), "a worker without DEPLOYMENT_MODE to run the job")
    assert groups(scratch) == ["later"]


def test_two_workers_racing_for_the_same_jobs_run_each_exactly_once(scratch: Scratch, workers: Workers):
    names = [f"race-{n}" for n in range(30)]
    enqueue(scratch, *[("add_group", [name]) for name in names])  # auth_group names are unique

    first, second = workers.db_worker(), workers.db_worker()

    wait_until(lambda: all_finished(scratch, len(names)), "both workers to run every job")
    assert [status for _, status, _ in jobs(scratch)] == [DONE] * len(names)
    assert sorted(groups(scratch)) == sorted(names)
    assert first.alive() and second.alive()


def test_a_worker_killed_mid_job_while_deploy_mode_goes_on_lets_the_switch_return_and_loses_nothing(
    scratch: Scratch, workers: Workers
):
    started, go = scratch.directory / "started", scratch.directory / "go"
    doomed = workers.db_worker()
    enqueue(scratch, ("add_group_then_wait", ["survivor", str(started), str(go)]))
    wait_until(started.exists, "the job to write and wait")
    on = workers.manage("deploy_mode", "on", "--reason", "a job is running")
    if not scratch.url.startswith("sqlite:"):
        wait_until(lambda: query(scratch, SWITCHED_ON)[0][0] == 1, "deploy mode to be on")

    doomed.kill()  # SIGKILL, mid-job, while the switch waits for it

    assert on.process.wait(timeout=120) == 0, on.output()
    assert jobs(scratch) == [("add_group_then_wait", "READY", None)]
    assert groups(scratch) == []
    go.touch()
    deploy_mode(scratch, "off")
    workers.db_worker()
    wait_until(lambda: all_finished(scratch, 1), "the job to run after the deploy")
    assert jobs(scratch) == [("add_group_then_wait", DONE, "survivor")]
    assert groups(scratch) == ["survivor"]
