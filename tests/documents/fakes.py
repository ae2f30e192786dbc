"""The incident's ways of making fake rows: a script without a user, raw SQL, a flipped status.

Django's own connection refuses every one of them (documents' seal, deployguard.seal), so they run
with every guard lifted (tests.utils.behind_the_services), as a stray client's would.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from documents.matching import stored_keys
from documents.models import PublishedDraft, Submission
from tests.utils import behind_the_services

KEY_COLUMNS = ("submitted_by_key", "submitted_by_bare_key", "title_key")


def raw_insert_submission(
    ml_number: str,
    *,
    title: str = "Widgets for everyone",
    submitted_by: str = "Ada Lovelace",
    status: str = "submitted",
    approved_by_id: int | None = None,
    data_source: str = "production",
    match_keys: bool = False,
) -> int:
    """A row inserted by SQL. match_keys=True: by a writer who fills every column, the match keys
    too (so that the row breaks only the provenance rules, not E007's "no match key")."""
    now = timezone.now()
    keys = (
        stored_keys(submitted_by=submitted_by, title=title) if match_keys else dict.fromkeys(KEY_COLUMNS, "")
    )
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO documents_submission (ml_number, title, submitted_by, status, approved_by_id, "
            "data_source, is_legitimate, created_at, updated_at, submitted_by_key, submitted_by_bare_key, "
            "title_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [ml_number, title, submitted_by, status, approved_by_id, data_source, True, now, now]
            + [keys[column] for column in KEY_COLUMNS],
        )
        cursor.execute("SELECT id FROM documents_submission WHERE ml_number = %s", [ml_number])
        return cursor.fetchone()[0]


def raw_insert_draft(name: str, *, submission_id: int, published_by_id: int) -> int:
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO documents_publisheddraft (name, submission_id, status, published_by_id, "
            "published_at, data_source, is_legitimate) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [name, submission_id, "published", published_by_id, timezone.now(), "production", True],
        )
        cursor.execute("SELECT id FROM documents_publisheddraft WHERE name = %s", [name])
        return cursor.fetchone()[0]


def raw_update_submission(pk: int, **values: Any) -> None:
    # Column names come from the test's keyword arguments, quoted; values are parameters.
    assignments = ", ".join(f"{connection.ops.quote_name(column)} = %s" for column in values)
    sql = f"UPDATE documents_submission SET {assignments} WHERE id = %s"  # noqa: S608
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(sql, [*values.values(), pk])


def script_publishes_without_user(ml_number: str, *, published_by: Any, name: str) -> PublishedDraft:
    """Start-up code that lifts every guard and saves with no acting user: history names nobody."""
    with behind_the_services():
        submission = Submission(ml_number=ml_number, title="Interop notes", submitted_by="Ada Lovelace")
        submission.save()
        submission.status = Submission.Status.APPROVED
        submission.approved_by = published_by
        submission.save()
        draft = PublishedDraft(
            name=name, submission=submission, published_by=published_by, published_at=timezone.now()
        )
        draft.save()
        submission.status = Submission.Status.PUBLISHED
        submission.save()
    return draft
