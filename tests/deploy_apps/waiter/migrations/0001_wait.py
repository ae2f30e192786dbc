import os
import time
from pathlib import Path

from django.db import migrations

from deployguard import state


def act(apps, schema_editor):
    if os.environ.get("DEPLOY_TEST_WAITER") == "switch_off":
        state.disable(changed_by="a migration", reason="switching it off from inside migrate")
        return
    Path(os.environ["DEPLOY_TEST_SIGNAL_FILE"]).write_text(str(os.getpid()))
    release = Path(os.environ["DEPLOY_TEST_RELEASE_FILE"])
    deadline = time.monotonic() + 180
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class Migration(migrations.Migration):
    atomic = False  # waits holding no transaction: the test writes meanwhile
    dependencies = []
    operations = [migrations.RunPython(act, migrations.RunPython.noop)]
