"""Under DJANGO_ENV=production, commands that delete data wholesale refuse unless overridden, logged."""

from __future__ import annotations

import json
import logging

import pytest

from deployguard.models_integrity import ScrubRun
from deployguard.wholesale import OVERRIDDEN, OVERRIDE_FLAG, REFUSED, SAFE_ALTERNATIVES, operator
from documents.models import PublishedDraft, Submission
from tests.factories import published_draft
from tests.utils import run_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    settings.DJANGO_ENV = "production"


@pytest.fixture
def documents_rows(db):
    published_draft()
    return (Submission.objects.count(), PublishedDraft.objects.count(), Submission.history.count())


def counts():
    return (Submission.objects.count(), PublishedDraft.objects.count(), Submission.history.count())


def refused(command: str, what: str) -> str:
    return "CommandError: " + REFUSED.format(
        command=command, what=what, instead=SAFE_ALTERNATIVES, flag=OVERRIDE_FLAG
    )


def test_flush_is_refused_in_production_and_deletes_nothing(production, documents_rows):
    _stdout, stderr, status = run_command("flush", "--noinput")

    assert status == 1
    assert stderr.strip() == refused("flush", "it deletes every row of every table")
    assert counts() == documents_rows


# Flushing inside the test's transaction fails on PostgreSQL (TRUNCATE ... with deferred checks).
@pytest.mark.django_db(transaction=True)
def test_flush_runs_with_the_override_and_the_override_is_logged(production, documents_rows, caplog):
    with caplog.at_level(logging.WARNING, logger="deployguard.wholesale"):
        _stdout, stderr, status = run_command(
            "flush", "--noinput", override_production_guard="Rebuilding the staging copy"
        )

    message = OVERRIDDEN.format(command="flush", user=operator(), reason="Rebuilding the staging copy")
    assert status == 0, stderr
    assert message in stderr
    assert [r.getMessage() for r in caplog.records if r.name == "deployguard.wholesale"] == [message]
    assert counts() == (0, 0, 0)


def test_a_blank_override_reason_is_no_override(production, documents_rows):
    _stdout, _stderr, status = run_command("flush", "--noinput", override_production_guard="  ")

    assert status == 1
    assert counts() == documents_rows


def test_sqlflush_is_refused_in_production(production, documents_rows):
    stdout, stderr, status = run_command("sqlflush")

    assert status == 1
    assert stdout == ""
    assert stderr.strip() == refused(
        "sqlflush", "its SQL, piped into `manage.py dbshell`, deletes every row of every table"
    )


@pytest.mark.django_db(transaction=True)
def test_flush_still_runs_outside_production(settings, documents_rows):
    settings.DJANGO_ENV = "development"

    _stdout, stderr, status = run_command("flush", "--noinput")

    assert status == 0, stderr
    assert counts() == (0, 0, 0)


def write_fixture(tmp_path, rows) -> str:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_loaddata_over_a_protected_table_is_refused_and_loads_nothing(production, documents_rows, tmp_path):
    submission = Submission.objects.get()
    fixture = write_fixture(
        tmp_path,
        [
            {"model": "deployguard.scrubrun", "pk": "run-1", "fields": {"kind": "scrub"}},
            {
                "model": "documents.submission",
                "pk": submission.pk,
                "fields": {"ml_number": submission.ml_number, "title": "Overwritten", "submitted_by": "X"},
            },
        ],
    )

    _stdout, stderr, status = run_command("loaddata", fixture)

    assert status == 1
    assert stderr.strip() == refused(
        "loaddata",
        "the fixture writes rows of the protected table documents_submission, around every service",
    )
    assert Submission.objects.get().title == submission.title
    assert not ScrubRun.objects.exists()  # the whole load rolled back


def test_loaddata_of_deployguards_own_tables_runs_in_production(production, tmp_path):
    fixture = write_fixture(
        tmp_path, [{"model": "deployguard.scrubrun", "pk": "run-1", "fields": {"kind": "scrub"}}]
    )

    _stdout, stderr, status = run_command("loaddata", fixture)

    assert status == 0, stderr
    assert ScrubRun.objects.filter(pk="run-1").exists()


def test_migrating_an_app_back_to_zero_is_refused_in_production(production, documents_rows):
    _stdout, stderr, status = run_command("migrate", "documents", "zero", "--noinput")

    assert status == 1
    assert stderr.strip() == refused(
        "migrate documents zero", "unapplying migrations drops tables and columns, with every row in them"
    )
    assert counts() == documents_rows


def test_migrating_an_app_to_an_earlier_migration_is_refused_in_production(production, documents_rows):
    _stdout, stderr, status = run_command("migrate", "documents", "0004", "--noinput")

    assert status == 1
    assert "Refusing to run `migrate documents 0004`" in stderr
    assert counts() == documents_rows


def test_migrating_forwards_runs_in_production(production, documents_rows):
    _stdout, stderr, status = run_command("migrate", "--noinput", verbosity=0)

    assert status == 0, stderr


def test_remove_stale_contenttypes_is_refused_in_production(production):
    _stdout, stderr, status = run_command("remove_stale_contenttypes", "--noinput")

    assert status == 1
    assert "Refusing to run `remove_stale_contenttypes`" in stderr


def test_a_hostile_override_reason_reaches_the_log_and_the_terminal_escaped(production, caplog):
    reason = "Rebuilding\n2026-01-01 00:00:00 INFO deployguard all clear\x1b[2J"
    with caplog.at_level(logging.WARNING, logger="deployguard.wholesale"):
        _stdout, stderr, status = run_command("sqlflush", override_production_guard=reason)

    assert status == 0, stderr
    shown = "Rebuilding\\n2026-01-01 00:00:00 INFO deployguard all clear\\x1b[2J"
    message = OVERRIDDEN.format(command="sqlflush", user=operator(), reason=shown)
    assert [r.getMessage() for r in caplog.records if r.name == "deployguard.wholesale"] == [message]
    assert message in stderr and "\x1b" not in stderr and stderr.count("\n") <= 1
