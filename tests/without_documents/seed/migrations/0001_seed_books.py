from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("shelf", "Book").objects.create(title="Seeded during the deploy", author="nobody")


class Migration(migrations.Migration):
    initial = True
    dependencies = [("shelf", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
