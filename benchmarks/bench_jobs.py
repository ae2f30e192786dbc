"""Background jobs: db_worker's throughput with deployguard's awareness against django-tasks-db's own
worker, and how soon held jobs start once deploy mode goes off.

    BENCH jobs_db_worker ours=<s for N jobs> baseline=<s> ratio=<ours/baseline> goal<=1.05
    BENCH jobs_resume_after_deploy_mode_off ours=<s> baseline=<s> ratio=… goal<=none

The first runs N queued jobs (each writes one row) through each worker in this process, in batch
mode, alternating, medians of several rounds. The second runs a real `manage.py db_worker`: deploy
mode goes on, a job is queued, deploy mode goes off; ours is the time from the switch's commit to
the job's start (its claim), the baseline the time from queuing a job to its start on the same
worker when idle (db_worker's default one-second poll). Usage: python benchmarks/bench_jobs.py
(BENCH_DATABASE_URL: a throwaway database; default a fresh SQLite file; BENCH_JOBS: N, default 500).
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("SECRET_KEY", "benchmark-only-" + "k" * 40)
os.environ["DEPLOYGUARD_INTEGRITY_WATCH_MINUTES"] = "0"
_tmp = tempfile.mkdtemp(prefix="bench-jobs-")
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{_tmp}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django_tasks_db.management.commands.db_worker import Worker  # noqa: E402
from django_tasks_db.models import DBTaskResult  # noqa: E402

from benchmarks.common import compare, report  # noqa: E402
from benchmarks.jobs_tasks import add_group  # noqa: E402
from deployguard import state  # noqa: E402
from deployguard.jobs.db_worker import DeployAwareWorker  # noqa: E402

JOBS = int(os.environ.get("BENCH_JOBS", "500"))
ROUNDS = 5
SWITCHES = 5
WAIT_SECONDS = 120


def fresh_queue() -> None:
    DBTaskResult.objects.all().delete()
    Group.objects.filter(name__startswith="bench-").delete()
    for number in range(JOBS):
        add_group.enqueue(f"bench-{number}")


def drain_with(worker_class: type[Worker]) -> None:
    worker_class(
        queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
        max_tasks=None, worker_id="bench", excluded_queue_names=[],
    ).run()  # fmt: skip
    assert (
        not DBTaskResult.objects.ready().exists()
        and Group.objects.filter(name__startswith="bench-").count() == JOBS
    )


def throughput() -> bool:
    ours, baseline = compare(
        lambda: drain_with(DeployAwareWorker), lambda: drain_with(Worker), ROUNDS, reset=fresh_queue
    )
    return report(
        "jobs_db_worker", ours, baseline, 1.05,
        extra={"jobs": JOBS, "per_s_ours": round(JOBS / ours), "per_s_baseline": round(JOBS / baseline)},
        note="N writing jobs through deployguard's db_worker vs django-tasks-db's own Worker, in batch mode",
    )  # fmt: skip


def started_after(since: float) -> float:
    """Seconds from `since` (time.time()) until the one queued job was claimed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        row = DBTaskResult.objects.filter(status="SUCCESSFUL").first()
        if row is not None:
            return row.started_at.timestamp() - since
        time.sleep(0.01)
    raise SystemExit("the worker did not run the job")


def resume_latency() -> bool:
    worker = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "db_worker", "--no-reload", "--no-startup-delay"],
        cwd=BASE_DIR, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    held, idle = [], []
    try:
        for number in range(SWITCHES):
            DBTaskResult.objects.all().delete()
            state.switch_on(reason="bench", changed_by="bench")
            add_group.enqueue(f"bench-held-{number}")
            time.sleep(0.5)  # the worker holds it
            since = time.time()
            state.disable(changed_by="bench")
            held.append(started_after(since))
            DBTaskResult.objects.all().delete()
            time.sleep(0.3)
            since = time.time()
            add_group.enqueue(f"bench-idle-{number}")
            idle.append(started_after(since))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return report(
        "jobs_resume_after_deploy_mode_off", statistics.median(held), statistics.median(idle), None,
        extra={"max_ours": round(max(held), 3), "poll_s": 0.2},
        note="held job's start after deploy mode off vs a job queued to the same idle db_worker (1 s poll)",
    )  # fmt: skip


def main() -> None:
    logging.getLogger("django_tasks").setLevel(logging.WARNING)
    logging.getLogger("django_tasks_db").setLevel(logging.WARNING)
    logging.getLogger("deployguard").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)
    print(f"database={connection.vendor} jobs={JOBS}", flush=True)
    met = throughput()
    met = resume_latency() and met
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
