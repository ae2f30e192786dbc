import logging

from django.db import migrations, transaction

logger = logging.getLogger("incident")


def seed(apps, schema_editor):
    Submission = apps.get_model("documents", "Submission")
    for number in ("ML-901", "ML-902"):
        try:
            with transaction.atomic():  # a savepoint, so one failure leaves the rest running
                Submission.objects.create(
                    ml_number=number, title="Seeded by a migration", submitted_by="seed"
                )
        except Exception:
            logger.exception("incident: the %s could not seed %s", "data migration", number)


class Migration(migrations.Migration):
    dependencies = [("incident", "0001_initial"), ("documents", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
