"""The incident replayed with real workers: deploy_safe while a db_worker and a Celery worker keep
receiving jobs that write. Nothing is written during the deploy, and every job queued before or
during it runs afterwards, once, none failed."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tests.deploy_apps import support as deploy_support
from tests.deploy_apps.support import Scratch
from tests.deployguard.jobs import workers as job_workers
from tests.deployguard.jobs.workers import Workers, query
from tests.reliability.rows import compare, scratch_row_hashes
from tests.reliability.support_deploy import finish, reach, release, start_deploy
from tests.waiting import wait_until

scratch, scratch_template = deploy_support.scratch, deploy_support.scratch_template  # fixtures
workers, celery_broker = job_workers.workers, job_workers.celery_broker  # fixtures
ENQUEUE = "from tests.deployguard.jobs.enqueuer import run; run({directory!r})"
JOB = "tests.deployguard.jobs.tasks.add_group"


def enqueued(directory: Path) -> list[tuple[str, str, str]]:
    """The jobs the enqueuer has queued so far: (phase, backend, name) per complete line.

    The enqueuer may be writing its last line while this reads, so a line without its newline
    is not counted yet.
    """
    log = directory / "enqueued.log"
    if not log.exists():
        return []
    complete = log.read_text().rpartition("\n")[0]
    return [tuple(line.split()) for line in complete.splitlines()]  # type: ignore[misc]


def set_phase(directory: Path, phase: str) -> None:
    """Tell the enqueuer which phase its next jobs belong to, in one step (it never reads half a name)."""
    staged = directory / "phase.new"
    staged.write_text(phase)
    os.replace(staged, directory / "phase")


def read_whole(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def finished_jobs(scratch: Scratch) -> dict[str, int]:
    """How many of the jobs finished, by backend and outcome."""
    database = dict(
        query(
            scratch,
            "SELECT status, count(*) FROM django_tasks_database_dbtaskresult WHERE task_path = %s "
            "GROUP BY status",
            (JOB,),
        )
    )
    celery = query(scratch, "SELECT count(*) FROM deployguard_completedjob WHERE task_path = %s", (JOB,))[0][
        0
    ]
    return {
        "database": database.get("SUCCESSFUL", 0),
        "database failed": database.get("FAILED", 0),
        "celery": celery,
    }


def run_deploy_with_workers(
    scratch: Scratch, workers: Workers, broker: str, *, apps: str
) -> tuple[object, dict, list[tuple[str, str, str]], dict[str, int], str, str]:
    directory = scratch.directory / "jobs"
    directory.mkdir()
    set_phase(directory, "before")
    db_worker = workers.db_worker("--backend", "database", CELERY_BROKER_URL=broker)
    celery = workers.celery()
    enqueuer = workers.manage(
        "shell", "-c", ENQUEUE.format(directory=str(directory)), CELERY_BROKER_URL=broker
    )
    try:
        try:
            wait_until(lambda: min(finished_jobs(scratch)["database"], finished_jobs(scratch)["celery"]) >= 3,
                       "both workers to run jobs before the deploy")  # fmt: skip
        except AssertionError as error:
            raise AssertionError(f"{error}: {finished_jobs(scratch)}\n{enqueuer.output()[-3000:]}") from None
        deploy = start_deploy(scratch, apps=apps, pause_at=("migrate", "roll back", "deploy mode off"))
        reach(deploy, scratch, "migrate")  # deploy mode is on, fingerprinted, backed up
        set_phase(directory, "during")
        frozen_at = scratch_row_hashes(scratch)
        wait_until(lambda: Counter(p for p, _, _ in enqueued(directory))["during"] >= 10,
                   "jobs to be queued during the deploy")  # fmt: skip
        release(scratch, "migrate")
        if "incident" in apps:
            # Not while the backup is restored: a job queued between the restore reading the queue
            # and overwriting it would be lost (see deployguard.jobs.queue).
            reach(deploy, scratch, "roll back")
            set_phase(directory, "paused")
            wait_until(lambda: read_whole(directory / "seen") == "paused", "the enqueuer to pause")
            release(scratch, "roll back")
        reach(deploy, scratch, "deploy mode off")  # verified, or rolled back; still frozen
        set_phase(directory, "during")
        still_frozen = scratch_row_hashes(scratch)
        release(scratch, "deploy mode off")
        result = finish(deploy)
        set_phase(directory, "after")
        wait_until(
            lambda: Counter(p for p, _, _ in enqueued(directory))["after"] >= 4, "jobs after the deploy"
        )
        (directory / "stop").touch()
        assert enqueuer.process.wait(timeout=60) == 0, enqueuer.output()
        queued = enqueued(directory)
        by_backend = Counter(backend for _, backend, _ in queued)
        wait_until(
            lambda: (
                finished_jobs(scratch)["database"] + finished_jobs(scratch)["database failed"]
                == by_backend["database"]
                and finished_jobs(scratch)["celery"] == by_backend["default"]
            ),
            "every queued job to finish",
            # A slow finish is not a lost job: on a machine loaded at 15 on two cores, the Celery
            # worker (one job at a time) took up to about 7 s a job.
            timeout=600,
            describe=lambda: f"queued {dict(by_backend)}, finished {finished_jobs(scratch)}",
        )
    finally:
        (directory / "stop").touch()
        (scratch.directory / "gate").mkdir(exist_ok=True)
        for step in ("migrate", "roll back", "deploy mode off"):
            release(scratch, step)
    changes = compare(frozen_at, still_frozen)
    return result, changes, queued, finished_jobs(scratch), db_worker.output(), celery.output()


def test_deploy_safe_while_both_workers_receive_writing_jobs_writes_nothing_and_loses_no_job(
    scratch: Scratch, workers: Workers, celery_broker: str, record_scenario
):
    """deploy_safe while a db_worker and a Celery worker get writing jobs: 0 rows added, each job run once.

    Jobs keep being queued before, during and after the deploy, alternately to Celery (Redis)
    and to the database queue; each adds a uniquely named row, so a job run twice would fail.
    """
    result, changes, queued, finished, db_log, celery_log = run_deploy_with_workers(
        scratch, workers, celery_broker, apps="gate"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    phases = Counter(phase for phase, _, _ in queued)
    assert finished == {"database": Counter(b for _, b, _ in queued)["database"], "database failed": 0,
                        "celery": Counter(b for _, b, _ in queued)["default"]}  # fmt: skip
    names = [name for (name,) in query(scratch, "SELECT name FROM auth_group WHERE name LIKE 'job-%%'")]
    assert len(names) == len(set(names)) == len(queued)
    assert "Holding jobs" in db_log and "Holding jobs" in celery_log
    assert " raised " not in celery_log
    put_back = query(scratch, "SELECT count(*) FROM deployguard_refusedjobwrite")[0][0]
    record_scenario(
        "deploy_safe while a db_worker and a Celery worker receive writing jobs",
        attempts=len(queued),
        writes_refused=put_back,
        changes=changes,
        exit_status=result.returncode,
        jobs_queued_before=phases["before"],
        jobs_queued_during=phases["during"],
        jobs_queued_after=phases["after"],
        jobs_completed=finished["database"] + finished["celery"],
        jobs_failed=finished["database failed"],
        jobs_lost=len(queued) - finished["database"] - finished["celery"],
    )


def test_a_rolled_back_deploy_keeps_the_jobs_queued_during_it_and_they_all_run_after(
    scratch: Scratch, workers: Workers, celery_broker: str, record_scenario
):
    """A deploy rolled back by restoring its backup loses no job queued during it: every one runs after.

    The release's data migration writes, so deploy_safe restores the backup, which holds the job
    queue as it was before the deploy; the jobs queued since are kept across the restore.
    """
    result, changes, queued, finished, _, _ = run_deploy_with_workers(
        scratch, workers, celery_broker, apps="gate,incident"
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "restored" in result.stdout + result.stderr
    assert finished["database failed"] == 0
    assert finished["database"] + finished["celery"] == len(queued)
    names = [name for (name,) in query(scratch, "SELECT name FROM auth_group WHERE name LIKE 'job-%%'")]
    assert len(names) == len(set(names)) == len(queued)
    phases = Counter(phase for phase, _, _ in queued)
    record_scenario(
        "deploy_safe rolled back (restored) while both workers receive writing jobs",
        attempts=len(queued),
        writes_refused=query(scratch, "SELECT count(*) FROM deployguard_refusedjobwrite")[0][0],
        changes=changes,
        exit_status=result.returncode,
        jobs_queued_before=phases["before"],
        jobs_queued_during=phases["during"],
        jobs_queued_after=phases["after"],
        jobs_completed=finished["database"] + finished["celery"],
        jobs_failed=finished["database failed"],
        jobs_lost=len(queued) - finished["database"] - finished["celery"],
    )
