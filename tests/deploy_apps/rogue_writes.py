"""What the incident's code does now that documents' tables are sealed: `service_write()` refuses
every caller but documents.services, so it writes a published draft in raw SQL on Django's
connection, the one route left to it, which deploy mode refuses first (and the seal after)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone


def publish_behind_the_services(ml_number: str, name: str, *, title: str, submitted_by: str) -> None:
    now = timezone.now()
    publisher = get_user_model().objects.first()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO documents_submission (ml_number, title, submitted_by, status, data_source, "
            "is_legitimate, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [ml_number, title, submitted_by, "published", "production", True, now, now],
        )
        cursor.execute("SELECT id FROM documents_submission WHERE ml_number = %s", [ml_number])
        (submission_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO documents_publisheddraft (name, submission_id, status, published_by_id, "
            "published_at, data_source, is_legitimate) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [name, submission_id, "published", publisher.pk if publisher else None, now, "production", True],
        )
