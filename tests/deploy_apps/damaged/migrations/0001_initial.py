import os
from pathlib import Path

from django.db import migrations, models


def damage_backup_and_fail(apps, schema_editor):
    # Stands in for a disk fault or an operator error between the backup and the restore.
    for backup in Path(os.environ["DEPLOY_TEST_BACKUP_DIR"]).iterdir():
        if not backup.name.endswith(".manifest.json") and not backup.name.startswith("."):
            backup.write_bytes(b"not a backup any more")
    raise RuntimeError("damaged: this migration fails after damaging the backup")


class Migration(migrations.Migration):
    initial = True
    atomic = False
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Damage",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.IntegerField()),
            ],
        ),
        migrations.RunPython(damage_backup_and_fail, migrations.RunPython.noop),
    ]
