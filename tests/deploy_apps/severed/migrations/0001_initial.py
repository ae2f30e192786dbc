import os
import time
from pathlib import Path

from django.db import migrations, models

WAIT_SECONDS = 60


def wait_for_the_cut(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    signal_file = Path(os.environ["DEPLOY_TEST_SIGNAL_FILE"])
    signal_file.write_text(str(backend))
    go = signal_file.with_name(signal_file.name + ".go")
    deadline = time.monotonic() + WAIT_SECONDS
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # the backend is gone: this raises


class Migration(migrations.Migration):
    initial = True
    atomic = False
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Cut",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.IntegerField()),
            ],
        ),
        migrations.RunPython(wait_for_the_cut, migrations.RunPython.noop),
    ]
