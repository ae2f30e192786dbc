"""db_worker processes against a scratch database: held in deploy mode, put back on the freeze, never lost."""

from __future__ import annotations

import time

from tests.deploy_apps.support import Scratch
from tests.deployguard.jobs.workers import (
    Workers,
    deploy_mode,
    enqueue,
    groups,
    jobs,
    query,
    wait_until,
)

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
