"""The submitter's bare match key (documents.matching.bare_key), beside the keys of 0005.

Filled from each row's stored submitter key, by the function Submission.save() uses: a row whose
keys are missing (written around the model) keeps an empty bare key, so the rule still flags it.
Backwards the column is dropped; nothing to undo in the data.
"""

from django.db import migrations, models

from documents.matching import bare_key

BATCH = 2000


def fill_bare_keys(apps, schema_editor):
    """Every submission and history record gets the bare form of its own stored submitter key."""
    for name in ("Submission", "HistoricalSubmission"):
        model = apps.get_model("documents", name)
        pk = model._meta.pk.attname
        rows = model._base_manager.exclude(submitted_by_key="").order_by(pk)
        last = None
        while True:
            page = rows.filter(**{f"{pk}__gt": last}) if last is not None else rows
            batch = list(page.only(pk, "submitted_by_key")[:BATCH])
            if not batch:
                break
            for row in batch:
                row.submitted_by_bare_key = bare_key(row.submitted_by_key)
            model._base_manager.bulk_update(batch, ["submitted_by_bare_key"])
            last = getattr(batch[-1], pk)


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0005_submission_match_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="historicalsubmission",
            name="submitted_by_bare_key",
            field=models.TextField(db_default="", default="", editable=False),
        ),
        migrations.AddField(
            model_name="submission",
            name="submitted_by_bare_key",
            field=models.TextField(db_default="", default="", editable=False),
        ),
        migrations.RunPython(fill_bare_keys, migrations.RunPython.noop, elidable=True),
    ]
