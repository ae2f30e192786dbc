"""Drops `obsolete` and, as DEPLOY_TEST_RESHAPE says, changes the other columns:

- rewrite: rebuilds the table (SQLite, as the schema editor does) or alters `name` with a USING
  expression (PostgreSQL), upper-casing every name: a data change the proof must catch.
- retype_lossy: `size` becomes a text column holding each size plus one.
- honest: only the drop (and `size` widened, keeping every value).
- rename / rename_rewrite: `name` renamed to `title` (nothing dropped), its values kept or upper-cased.
"""

import os

from django.db import migrations

SQLITE_REBUILD = [
    'CREATE TABLE "new__reshape_item" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, '
    '"name" varchar(100) NOT NULL, "size" {size_type} NOT NULL)',
    'INSERT INTO "new__reshape_item" ("id", "name", "size") SELECT "id", {name}, {size} FROM "reshape_item"',
    'DROP TABLE "reshape_item"',
    'ALTER TABLE "new__reshape_item" RENAME TO "reshape_item"',
]
HOW = {
    "rewrite": {"name": 'upper("name")', "size": '"size"', "size_type": "integer"},
    "retype_lossy": {"name": '"name"', "size": 'CAST("size" + 1 AS TEXT)', "size_type": "text"},
    "honest": {"name": '"name"', "size": '"size"', "size_type": "bigint"},
}
RENAMES = {
    "sqlite": {
        "rename": ['ALTER TABLE "reshape_item" RENAME COLUMN "name" TO "title"'],
        "rename_rewrite": [
            'CREATE TABLE "new__reshape_item" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, '
            '"title" varchar(100) NOT NULL, "size" integer NOT NULL, "obsolete" varchar(20) NOT NULL)',
            'INSERT INTO "new__reshape_item" ("id", "title", "size", "obsolete") '
            'SELECT "id", upper("name"), "size", "obsolete" FROM "reshape_item"',
            'DROP TABLE "reshape_item"',
            'ALTER TABLE "new__reshape_item" RENAME TO "reshape_item"',
        ],
    },
    "postgresql": {
        "rename": ['ALTER TABLE "reshape_item" RENAME COLUMN "name" TO "title"'],
        "rename_rewrite": [
            'ALTER TABLE "reshape_item" RENAME COLUMN "name" TO "title"',
            'ALTER TABLE "reshape_item" ALTER COLUMN "title" TYPE varchar(100) USING upper("title")',
        ],
    },
}
POSTGRESQL = {
    "rewrite": 'ALTER TABLE "reshape_item" DROP COLUMN "obsolete", ALTER COLUMN "name" TYPE varchar(100) '
    'USING upper("name")',
    "retype_lossy": 'ALTER TABLE "reshape_item" DROP COLUMN "obsolete", ALTER COLUMN "size" TYPE text '
    'USING ("size" + 1)::text',
    "honest": 'ALTER TABLE "reshape_item" DROP COLUMN "obsolete", ALTER COLUMN "size" TYPE bigint',
}


def reshape(apps, schema_editor):
    how = os.environ.get("DEPLOY_TEST_RESHAPE", "honest")
    if how.startswith("rename"):
        for statement in RENAMES[schema_editor.connection.vendor][how]:
            schema_editor.execute(statement)
        return
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL[how])
        return
    for statement in SQLITE_REBUILD:
        schema_editor.execute(statement.format(**HOW[how]))


class Migration(migrations.Migration):
    dependencies = [("reshape", "0001_initial")]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(reshape, migrations.RunPython.noop)],
            state_operations=[migrations.RemoveField(model_name="item", name="obsolete")],
        )
    ]
