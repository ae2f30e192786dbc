"""The incident's background job: a worker of the new release that keeps trying to publish.

Run as `manage.py shell -c "from tests.deploy_apps.incident.job import run; run(STOP_FILE)"`.
Prints one line per attempt: "ok", "refused" (DeployModeActive) or "error <exception>".
"""

import os
import time

MAX_SECONDS = 600  # the stop file ends it; this only caps a test that hangs


def run(stop_file):
    from deployguard import DeployModeActive
    from tests.deploy_apps.rogue_writes import publish_behind_the_services

    deadline = time.monotonic() + MAX_SECONDS
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        try:
            publish_behind_the_services("ML-970", "rfc970", title="Job", submitted_by="job")
            print("ok", flush=True)
        except DeployModeActive:
            print("refused", flush=True)
        except Exception as error:
            print(f"error {type(error).__name__}", flush=True)
        time.sleep(0.05)
