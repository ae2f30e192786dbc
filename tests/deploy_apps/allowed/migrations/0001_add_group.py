from django.db import migrations


def add_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.create(name="reviewers")


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(add_group, migrations.RunPython.noop)]
