"""A site process that keeps queuing writing jobs, to Celery and to the database in turn, until told to stop.

Run as `manage.py shell -c "from tests.deployguard.jobs.enqueuer import run; run(DIRECTORY)"`.
Each job is logged as a line `<phase> <backend> <id>`, the phase read from DIRECTORY/phase
(what the test says is happening: before, during or after the deploy; nothing is queued while
it says "paused", nor past MAX_PER_PHASE jobs in one phase); it stops once
DIRECTORY/stop exists (or after MAX_SECONDS).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.deployguard.jobs.tasks import add_group

MAX_SECONDS = 240
# Jobs per phase at most, whatever the phase lasts: a deploy that is slow on a loaded machine
# must not make the test queue (and then wait for) hundreds more jobs.
MAX_PER_PHASE = 20
BACKENDS = ("default", "database")  # Celery (CELERY_BROKER_URL is set), then db_worker


def run(directory: str) -> None:
    folder = Path(directory)
    deadline = time.monotonic() + MAX_SECONDS
    number = 0
    per_phase: dict[str, int] = {}
    with (folder / "enqueued.log").open("a") as log:
        while not (folder / "stop").exists() and time.monotonic() < deadline:
            phase = (folder / "phase").read_text().strip()
            staged = folder / "seen.new"
            staged.write_text(phase)
            os.replace(staged, folder / "seen")  # every job queued before it says so is logged
            if phase == "paused" or per_phase.get(phase, 0) >= MAX_PER_PHASE:
                time.sleep(0.05)
                continue
            per_phase[phase] = per_phase.get(phase, 0) + 1
            backend = BACKENDS[number % len(BACKENDS)]
            result = add_group.using(backend=backend).enqueue(f"job-{number}")
            log.write(f"{phase} {backend} {result.id}\n")
            log.flush()
            number += 1
            time.sleep(0.05)
