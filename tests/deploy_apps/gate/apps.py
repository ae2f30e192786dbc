"""Wraps Steps.step in deploy_safe's own process; the product has no test hooks.

DEPLOY_TEST_GATE_DIR: a directory. On entering a step named in DEPLOY_TEST_PAUSE_AT (comma
separated), deploy_safe writes `<dir>/<step>.reached` (holding its deploy id) and waits for
`<dir>/<step>.go`. On entering the step named by DEPLOY_TEST_KILL_AT it writes the same file,
then SIGKILLs itself: nothing of it runs after that, as when the kernel's OOM killer strikes.
"""

import contextlib
import os
import signal
import time
from pathlib import Path

from django.apps import AppConfig

GATE_SECONDS = 60  # a test that never opens the gate must not hang the suite


def gate_file(directory, step, suffix):
    return Path(directory) / f"{step.replace(' ', '_').replace(':', '')}.{suffix}"


def install():
    # Imported once apps are ready: deployguard.origin defines a model.
    from deployguard.deploy.steps import Steps
    from deployguard.origin import current_deploy_id

    directory = os.environ.get("DEPLOY_TEST_GATE_DIR")
    if not directory or getattr(Steps.step, "gated", False):
        return
    pause_at = {name for name in os.environ.get("DEPLOY_TEST_PAUSE_AT", "").split(",") if name}
    kill_at = os.environ.get("DEPLOY_TEST_KILL_AT", "")
    original = Steps.step

    @contextlib.contextmanager
    def step(self, name, **kwargs):
        if name in pause_at or name == kill_at:
            gate_file(directory, name, "reached").write_text(current_deploy_id())
        if name == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if name in pause_at:
            deadline = time.monotonic() + GATE_SECONDS
            while not gate_file(directory, name, "go").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        with original(self, name, **kwargs) as entered:
            yield entered

    step.gated = True
    Steps.step = step


class GateConfig(AppConfig):
    name = "tests.deploy_apps.gate"
    label = "gate"

    def ready(self):
        install()
