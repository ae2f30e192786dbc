import os

from django.db import migrations

SWAP = [
    "UPDATE auth_permission SET codename = 'swapping' WHERE codename = 'view_submission'",
    "UPDATE auth_permission SET codename = 'view_submission' WHERE codename = 'publish_submission'",
    "UPDATE auth_permission SET codename = 'publish_submission' WHERE codename = 'swapping'",
]
RECORD = ["INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '9999_never_ran', '2026-01-01')"]
GRANT = [
    "INSERT INTO auth_permission (name, content_type_id, codename) "
    "SELECT 'Can do anything', id, 'do_anything' FROM django_content_type WHERE app_label = 'documents' "
    "AND model = 'submission'"
]


def write(apps, schema_editor):
    for statement in {"swap": SWAP, "record": RECORD, "grant": GRANT}[os.environ.get("DEPLOY_TEST_PERMSWAP", "swap")]:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("documents", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(write, migrations.RunPython.noop)]
