"""Undoing a deploy: the data proved unchanged since the backup, or restored; and when neither
can be proved, a message that says what a person must do."""

from __future__ import annotations

import dataclasses

import pytest
from django.core import mail
from django.db import connection

from deployguard import backup
from deployguard.deploy import undo
from tests.utils import behind_the_services


@pytest.fixture
def backed_up(transactional_db, tmp_path) -> tuple:
    """A verified backup of the test database (committed rows: pg_dump sees only those)."""
    from tests.factories import SubmissionFactory

    SubmissionFactory(ml_number="ML-001", title="Before the deploy")
    return backup.backup_database(tmp_path / "backup.bin")


def test_data_equal_to_the_backup_is_proved_unchanged_and_nothing_is_restored(backed_up):
    path, manifest = backed_up

    assert undo.differences_from(manifest) == []
    assert undo.restore_or_prove_unchanged(path, manifest, reason="a test") == undo.PROVED_UNCHANGED


def test_differences_name_the_tables_and_the_migrations_that_differ(backed_up):
    _, manifest = backed_up
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute("UPDATE documents_submission SET title = 'Changed since'")

    assert undo.differences_from(dataclasses.replace(manifest, migrations={})) == [
        "documents_submission: 1 rows both times, contents differ",
        "applied migrations differ",
    ]


def test_a_backup_that_does_not_match_its_manifest_is_refused_and_nothing_is_restored(backed_up):
    path, manifest = backed_up
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute("UPDATE documents_submission SET title = 'Changed since'")
    path.write_bytes(path.read_bytes() + b"damage")

    with pytest.raises(undo.FAILURES) as failed:
        undo.restore_or_prove_unchanged(path, manifest, reason="a test")

    assert isinstance(failed.value, backup.RestoreRefused)
    assert undo.differences_from(manifest) == ["documents_submission: 1 rows both times, contents differ"]


def test_when_the_backup_cannot_be_used_the_way_out_is_an_earlier_backup(tmp_path):
    path = tmp_path / "backups" / "db.dump"

    message = undo.human_must_act(
        deploy_id="d-1", why="migrate failed", path=path, error=backup.RestoreRefused("damaged")
    )

    assert message == undo.BACKUP_UNUSABLE.format(
        deploy_id="d-1", why="migrate failed", path=path, error="damaged", directory=tmp_path / "backups"
    )
    assert "manage.py restore_db OTHER_BACKUP --yes" in message


def test_when_the_restore_is_unverified_the_way_out_is_restoring_that_backup_by_hand(tmp_path):
    path = tmp_path / "db.dump"

    message = undo.human_must_act(
        deploy_id="d-1", why="migrate failed", path=path, error=backup.RestoreUnverified("1 rows differ")
    )

    assert message == undo.HUMAN_MUST_ACT.format(
        deploy_id="d-1", why="migrate failed", path=path, how="failed or is unverified (1 rows differ)"
    )
    assert f"manage.py restore_db {path} --yes" in message


def test_the_admins_are_mailed_how_the_deploy_ended(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]

    undo.alert("d-1", "rolled_back", "Deploy d-1 failed and was rolled back.")

    assert [(m.subject, m.body) for m in mail.outbox] == [
        ("[Django] deploy_safe d-1: rolled_back", "Deploy d-1 failed and was rolled back.")
    ]
