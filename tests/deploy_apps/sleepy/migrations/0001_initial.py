import os
import time
from pathlib import Path

from django.db import migrations, models


def sleep(apps, schema_editor):
    Path(os.environ["DEPLOY_TEST_SIGNAL_FILE"]).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("DEPLOY_TEST_SLEEP", "60")))


class Migration(migrations.Migration):
    initial = True
    atomic = False
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Slow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.IntegerField()),
            ],
        ),
        migrations.RunPython(sleep, migrations.RunPython.noop),
    ]
