from django.db import migrations


def seed(apps, schema_editor):
    Submission = apps.get_model("documents", "Submission")
    for number in (901, 902, 903):
        Submission.objects.create(ml_number=f"ML-{number}", title="Seeded by a migration", submitted_by="seed")


class Migration(migrations.Migration):
    dependencies = [("documents", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
