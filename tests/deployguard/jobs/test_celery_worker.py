"""A Celery worker (--pool=solo, Redis) on a scratch database: the holds and put-backs db_worker has."""

from __future__ import annotations

import time

import pytest

from tests.deploy_apps.support import Scratch
from tests.deployguard.jobs.workers import Workers, deploy_mode, enqueue, groups, query
from tests.waiting import wait_until

VISIBILITY = 3  # seconds before Redis hands an unacknowledged message to another worker


@pytest.fixture
def broker(celery_broker: str) -> dict[str, str]:
    """The environment that sends the site's jobs to Celery."""
    return {"CELERY_BROKER_URL": celery_broker}


def completed(scratch: Scratch) -> int:
    return query(scratch, "SELECT count(*) FROM deployguard_completedjob")[0][0]


def refused(scratch: Scratch) -> list[tuple[str, str]]:
    return query(scratch, "SELECT task_path, exception FROM deployguard_refusedjobwrite ORDER BY id")


def test_celery_jobs_queued_in_deploy_mode_wait_and_then_run_in_order(
    scratch: Scratch, workers: Workers, broker: dict[str, str]
):
    deploy_mode(scratch, "on")
    worker = workers.celery()
    enqueue(scratch, *[("add_group", [f"held-{n}"]) for n in range(5)], **broker)
    wait_until(lambda: "Holding jobs" in worker.output(), "the worker to hold")
    assert groups(scratch) == [] and completed(scratch) == 0

    deploy_mode(scratch, "off")

    wait_until(lambda: completed(scratch) == 5, "the held jobs to run")
    assert groups(scratch) == [f"held-{n}" for n in range(5)]
    assert "raised" not in worker.output()


def test_a_celery_job_claimed_on_a_stale_off_is_put_back_and_runs_after_the_deploy(
    scratch: Scratch, workers: Workers, broker: dict[str, str]
):
    worker = workers.celery(DEPLOYGUARD_STATE_CACHE_SECONDS="60")
    enqueue(scratch, ("add_group", ["before"]), **broker)
    wait_until(lambda: completed(scratch) == 1, "the worker to read deploy mode off and run a job")
    deploy_mode(scratch, "on")

    enqueue(scratch, ("add_group_swallowing_refusal", ["during"]), **broker)
    wait_until(lambda: refused(scratch), "the job to meet the freeze")
    assert refused(scratch) == [
        ("tests.deployguard.jobs.tasks.add_group_swallowing_refusal", "DeployModeActive")
    ]
    assert groups(scratch) == ["before"] and completed(scratch) == 1

    deploy_mode(scratch, "off")

    wait_until(lambda: completed(scratch) == 2, "the put-back job to run")
    assert groups(scratch) == ["before", "during"]
    assert "raised" not in worker.output()


def test_a_celery_worker_killed_mid_job_leaves_the_job_to_another_worker_which_runs_it_once(
    scratch: Scratch, workers: Workers, broker: dict[str, str]
):
    started, go = scratch.directory / "started", scratch.directory / "go"
    redeliver = {"CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY)}
    doomed = workers.celery(**redeliver)
    enqueue(scratch, ("add_group_then_wait", ["once", str(started), str(go)]), **broker)
    wait_until(started.exists, "the job to write and wait")

    doomed.kill()

    assert groups(scratch) == [] and completed(scratch) == 0
    go.touch()
    # Redis hands an unacknowledged message back once it is older than the visibility timeout,
    # when a worker looks (at its start, then every 100 s): start the next one after that.
    time.sleep(VISIBILITY + 1)
    workers.celery(**redeliver)
    wait_until(lambda: completed(scratch) == 1, "another worker to run the redelivered job")
    assert groups(scratch) == ["once"]


def test_a_celery_worker_started_with_deploy_mode_forced_on_consumes_nothing(
    scratch: Scratch, workers: Workers, broker: dict[str, str]
):
    frozen = workers.celery(DEPLOYMENT_MODE="true")
    wait_until(lambda: "consumes no jobs" in frozen.output(), "the frozen worker to stop consuming")
    enqueue(scratch, ("add_group", ["later"]), **broker)

    workers.celery()
    wait_until(lambda: completed(scratch) == 1, "a worker without DEPLOYMENT_MODE to run the job")
    assert groups(scratch) == ["later"]
    assert "add_group" not in frozen.output()


def test_a_celery_worker_stopped_while_holding_a_job_gives_it_back_to_the_queue(
    scratch: Scratch, workers: Workers, broker: dict[str, str]
):
    deploy_mode(scratch, "on")
    holding = workers.celery()
    enqueue(scratch, ("add_group", ["given-back"]), **broker)
    wait_until(lambda: "Holding jobs" in holding.output(), "the worker to hold the job")

    holding.stop()  # SIGTERM: a warm shutdown

    assert holding.process.returncode == 0, holding.output()
    assert "reject requeue=True" in holding.output()
    deploy_mode(scratch, "off")
    workers.celery()
    wait_until(lambda: completed(scratch) == 1, "the next worker to run the job")
    assert groups(scratch) == ["given-back"]
