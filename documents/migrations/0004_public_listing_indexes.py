"""Indexes for the public site: the listing newest first, and word search over titles.

`documents_draft_public` holds only what the listing can show (published, production,
legitimate drafts) in (published_at, id) order, so the index page and its keyset
pagination read 51 index entries whatever the table's size, and never walk past withdrawn
or quarantined rows. `documents_submission_title_words` (PostgreSQL only) is a GIN index
of each title's words for the search box; SQLite has no equivalent that the deploy freeze
can live with (an FTS5 table is virtual, and takes no trigger), so it searches a bounded
window instead (documents/selectors.py). `documents_hsub_published` finds the newest history
record of a published submission, which the pages' ETag and Last-Modified read.

Like 0003, the indexes exist in the database only: documents/models.py is not touched,
so the migration state, and `makemigrations`, see no change.
"""

from django.contrib.postgres.indexes import GinIndex
from django.db import migrations, models
from django.db.models import F, Func, Q

# The same expression as documents.selectors.TitleWords, so that PostgreSQL matches it.
TITLE_WORDS = Func(F("title"), template="to_tsvector('simple'::regconfig, %(expressions)s)")


class AddIndexOnPostgreSQL(migrations.AddIndex):
    """AddIndex, applied on PostgreSQL only (other engines have no GIN)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("documents", "0003_history_latest_record_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AddIndex(
                    model_name="publisheddraft",
                    index=models.Index(
                        fields=["published_at", "id"],
                        condition=Q(status="published", data_source="production", is_legitimate=True),
                        name="documents_draft_public",
                    ),
                ),
                migrations.AddIndex(
                    model_name="historicalsubmission",
                    index=models.Index(fields=["status", "history_id"], name="documents_hsub_published"),
                ),
                AddIndexOnPostgreSQL(
                    model_name="submission",
                    index=GinIndex(TITLE_WORDS, name="documents_submission_title_words"),
                ),
            ],
            state_operations=[],
        )
    ]
