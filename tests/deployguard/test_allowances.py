"""The ways through deploy mode: allow_writes(reason), and the narrower schema-change allowance."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

import deployguard
from deployguard import allowances, guard, state


def test_allow_writes_lets_one_block_through_and_is_logged(db, caplog):
    state.enable(reason="Release 42", changed_by="ops@host")
    with deployguard.allow_writes("deploy_safe: record the deploy"):
        Group.objects.create(name="bookkeeping")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        Group.objects.create(name="after the block")
    assert list(Group.objects.values_list("name", flat=True)) == ["bookkeeping"]
    assert "deploy_safe: record the deploy" in caplog.text


def test_allow_writes_needs_a_reason():
    with pytest.raises(ValueError, match="needs a reason"), deployguard.allow_writes(" "):
        pass


def _run_guarded(sql: str) -> str:
    return guard.write_guard(lambda *args: "ran", sql, None, False, {})


def test_schema_changes_let_ddl_and_bookkeeping_rows_through_and_nothing_else(deploy_mode_on):
    with allowances.allow_schema_changes("migrate in a test"):
        assert _run_guarded('CREATE TABLE "documents_new" ("id" integer)') == "ran"
        assert _run_guarded('ALTER TABLE "documents_submission" ADD COLUMN "x" integer') == "ran"
        assert _run_guarded('INSERT INTO "django_migrations" ("app", "name") VALUES (%s, %s)') == "ran"
        assert _run_guarded('INSERT INTO "django_content_type" ("app_label") VALUES (%s)') == "ran"
        assert _run_guarded('INSERT INTO "new__documents_submission" SELECT * FROM "x"') == "ran"
        for sql in (
            'INSERT INTO "documents_submission" ("title") VALUES (%s)',
            'UPDATE "documents_publisheddraft" SET "status" = %s',
            'DELETE FROM "auth_group"',
        ):
            with pytest.raises(deployguard.DeployModeActive):
                _run_guarded(sql)
    with pytest.raises(deployguard.DeployModeActive):
        _run_guarded('CREATE TABLE "documents_new" ("id" integer)')
