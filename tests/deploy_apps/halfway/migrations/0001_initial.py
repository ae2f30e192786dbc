from django.db import migrations, models


def fail(apps, schema_editor):
    raise RuntimeError("half way: this migration fails after creating its table")


class Migration(migrations.Migration):
    initial = True
    atomic = False
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Half",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.IntegerField()),
            ],
        ),
        migrations.RunPython(fail, migrations.RunPython.noop),
    ]
