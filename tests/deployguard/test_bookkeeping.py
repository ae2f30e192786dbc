"""Migrate's bookkeeping tables after a deploy: existing rows unchanged, only the rows migrate adds."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import connection

from deployguard import bookkeeping, fingerprints
from deployguard.tables import migrate_writable_tables


def _frozen() -> dict[str, fingerprints.TableFingerprint]:
    return {table: fp for table, fp in fingerprints.take().items() if table in migrate_writable_tables()}


def _raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def test_nothing_changed_and_the_rows_migrate_adds_pass(db):
    frozen = _frozen()
    _raw("INSERT INTO django_migrations (app, name, applied) VALUES ('schema', '0001_initial', '2026-01-01')")

    assert bookkeeping.differences(frozen, applied={"schema.0001_initial"}) == []


def test_a_swapped_codename_is_an_existing_row_changed(db):
    frozen = _frozen()
    count = frozen["auth_permission"].count
    _raw("UPDATE auth_permission SET codename = 'x' WHERE codename = 'view_permission'")

    assert bookkeeping.differences(frozen, applied=set()) == [
        "auth_permission: rows that existed before the deploy changed "
        f"({count} rows both times, contents differ)"
    ]


def test_a_deleted_row_is_an_existing_row_changed(db):
    frozen = _frozen()
    count = frozen["auth_permission"].count
    _raw("DELETE FROM auth_permission WHERE codename = 'view_permission'")

    assert bookkeeping.differences(frozen, applied=set()) == [
        "auth_permission: rows that existed before the deploy changed "
        f"({count} rows before, {count - 1} after)"
    ]


def test_rows_migrate_would_not_add_are_named(db):
    frozen = _frozen()
    auth_group = ContentType.objects.get(app_label="auth", model="group").pk
    _raw("INSERT INTO django_migrations (app, name, applied) VALUES ('documents', '9999_x', '2026-01-01')")
    _raw("INSERT INTO django_content_type (app_label, model) VALUES ('nowhere', 'ghost')")
    _raw(
        "INSERT INTO auth_permission (name, content_type_id, codename) VALUES ('x', %s, 'rule_everything')",
        [auth_group],
    )

    assert bookkeeping.differences(frozen, applied={"schema.0001_initial"}) == [
        "auth_permission: gained rule_everything (auth.group), which no installed model declares",
        "django_content_type: gained nowhere.ghost, which no installed model is",
        "django_migrations: gained documents.9999_x, which this deploy did not apply",
    ]
