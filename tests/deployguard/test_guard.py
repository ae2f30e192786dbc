"""The write guard: which statements are writes, and every ORM and SQL path refused in deploy mode."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group
from django.core.management.sql import emit_post_migrate_signal
from django.db import DatabaseError, connection, connections, transaction
from django.db.models.signals import post_migrate
from django.test.utils import CaptureQueriesContext

import deployguard
from deployguard import guard, sql_writes, state
from documents import services
from documents.models import Submission
from tests.deployguard.support import snapshot
from tests.factories import SubmissionFactory
from tests.utils import behind_the_services


def test_the_guard_is_on_every_connection(db):
    connection.ensure_connection()
    assert guard.is_installed(connection)


def test_orm_writes_pass_while_deploy_mode_is_off(db):
    Group.objects.create(name="editors")
    assert Group.objects.count() == 1


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda: Group.objects.create(name="late"), id="create"),
        pytest.param(lambda: Group.objects.get_or_create(name="late"), id="get_or_create"),
        pytest.param(lambda: Group.objects.bulk_create([Group(name="a"), Group(name="b")]), id="bulk_create"),
        pytest.param(lambda: Group.objects.update(name="renamed"), id="queryset-update"),
        pytest.param(lambda: Group.objects.all().delete(), id="queryset-delete"),
        pytest.param(lambda: _save_renamed(Group.objects.get(name="existing")), id="save"),
        pytest.param(lambda: Group.objects.get(name="existing").delete(), id="instance-delete"),
        pytest.param(
            lambda: Group.objects.update_or_create(name="existing", defaults={"name": "x"}),
            id="update_or_create",
        ),
    ],
)
def test_every_orm_write_is_refused_in_deploy_mode_and_changes_nothing(db, write):
    Group.objects.create(name="existing")
    SubmissionFactory()
    before = snapshot()
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive) as refused:
        with transaction.atomic():
            write()
    assert "manage.py deploy_mode off" in str(refused.value)
    assert "ops@host" in str(refused.value)
    assert "Release 42" in str(refused.value)
    assert snapshot() == before


def _save_renamed(group: Group) -> None:
    group.name = "renamed"
    group.save()


def test_sealed_document_writes_are_refused_by_the_guard_even_inside_the_service_seal(db):
    submission = SubmissionFactory()
    before = snapshot()
    state.enable(reason="Release 42", changed_by="ops@host")
    submission.title = "Changed during the deploy"
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), behind_the_services():
        submission.save()
    assert snapshot() == before


def test_a_simple_history_revert_is_refused_in_deploy_mode(db, superuser):
    submission = SubmissionFactory(title="First title", actor=superuser)
    services.update_submission(actor=superuser, submission=submission, title="Second title", submitted_by="G")
    before = snapshot()
    state.enable(reason="Release 42", changed_by="ops@host")
    first = submission.history.earliest()
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), behind_the_services():
        first.instance.save()
    assert snapshot() == before
    assert Submission.objects.get().title == "Second title"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO auth_group (name) VALUES ('raw')",
        "insert into auth_group (name) values ('raw')",
        "/* backfill */ UPDATE auth_group SET name = 'raw'",
        "DELETE FROM auth_group",
        "SELECT 1; DELETE FROM auth_group",
        "WITH x AS (SELECT 1) INSERT INTO auth_group (name) SELECT 'raw' FROM x",
        "CREATE TABLE sneaky (id integer)",
        "DROP TABLE auth_group",
    ],
)
def test_raw_sql_through_connection_cursor_is_refused_in_deploy_mode(db, sql):
    Group.objects.create(name="existing")
    before = snapshot()
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert snapshot() == before


def test_reads_keep_working_in_deploy_mode_with_no_query_for_the_state(db):
    Group.objects.create(name="existing")
    state.enable(reason="Release 42", changed_by="ops@host")
    state.clear_cache()  # even with nothing cached, a read does not ask for the state
    with CaptureQueriesContext(connection) as queries:
        assert list(Group.objects.values_list("name", flat=True)) == ["existing"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM auth_group")
    assert len(queries) == 2


def test_deployguard_tables_and_the_allowlist_stay_writable_in_deploy_mode(db):
    from django.contrib.sessions.backends.db import SessionStore

    state.enable(reason="Release 42", changed_by="ops@host")
    session = SessionStore()
    session["seen"] = True
    session.create()
    assert SessionStore(session_key=session.session_key)["seen"] is True


def test_a_write_right_after_the_switch_in_this_process_is_refused_without_waiting(db):
    Group.objects.create(name="before")
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        Group.objects.create(name="after")
    state.disable(changed_by="ops@host")
    Group.objects.create(name="after off")
    assert Group.objects.count() == 2


def test_deploy_mode_set_in_the_database_by_another_host_is_seen_once_the_cache_expires(db, settings):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    from deployguard.models import DeployModeState

    # Another host flipped the row: this process has only its cache to go on until it expires.
    with deployguard.allow_writes("test: another host's deploy_mode on"):
        DeployModeState.objects.create(enabled=True, reason="Other host", changed_by="ops@other")
    state.clear_cache()
    with pytest.raises(deployguard.DeployModeActive, match="ops@other"), transaction.atomic():
        Group.objects.create(name="late")
    assert Group.objects.count() == 0


def test_deploymentmode_true_in_the_environment_blocks_writes_in_this_process(db, monkeypatch):
    monkeypatch.setenv("DEPLOYMENT_MODE", "true")
    state.clear_cache()  # as in a process started with it: read when the cache is empty
    with pytest.raises(deployguard.DeployModeActive, match="DEPLOYMENT_MODE=true") as refused:
        with transaction.atomic():
            Group.objects.create(name="late")
    assert "Restart this process without DEPLOYMENT_MODE" in str(refused.value)
    monkeypatch.setenv("DEPLOYMENT_MODE", "false")
    state.clear_cache()
    Group.objects.create(name="now")
    assert Group.objects.count() == 1


def test_an_unparsable_deploymentmode_stops_start_up_with_a_message(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("DEPLOYMENT_MODE", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEPLOYMENT_MODE='maybe' is neither true nor false"):
        state.check_environment()


def test_writes_are_refused_when_the_state_cannot_be_read(db, monkeypatch):
    Group.objects.create(name="existing")
    before = snapshot()

    def unreadable(*args, **kwargs):
        raise DatabaseError("connection to the state database lost")

    state.clear_cache()
    monkeypatch.setattr("deployguard.models.DeployModeState.objects.using", unreadable)
    with pytest.raises(deployguard.DeployModeActive, match="could not be read") as refused:
        with transaction.atomic():
            Group.objects.create(name="late")
    assert "`manage.py migrate deployguard`" in str(refused.value)
    monkeypatch.undo()
    assert snapshot() == before


def test_a_background_thread_cannot_write_in_deploy_mode(deploy_mode_on_committed):
    state.clear_cache()  # the thread's own connection reads the shared state
    outcome: list[BaseException | None] = []

    def background_job() -> None:
        try:
            Group.objects.create(name="from a thread")
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)
        finally:
            connections.close_all()

    worker = threading.Thread(target=background_job)
    worker.start()
    worker.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], deployguard.DeployModeActive)
    assert Group.objects.count() == 0


def test_a_post_migrate_receiver_cannot_write_in_deploy_mode(db):
    def seed_groups(**kwargs):
        Group.objects.get_or_create(name="seeded on start-up")

    post_migrate.connect(seed_groups, dispatch_uid="test.seed_groups")
    try:
        state.enable(reason="Release 42", changed_by="ops@host")
        before = snapshot()
        with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
            emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    finally:
        post_migrate.disconnect(dispatch_uid="test.seed_groups")
    assert snapshot() == before


def test_recording_a_migration_is_refused_in_deploy_mode_unless_the_pipeline_allows_it(db):
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connection)
    applied = set(recorder.applied_migrations())
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        recorder.record_applied("documents", "9999_during_the_deploy")
    assert set(recorder.applied_migrations()) == applied
    with deployguard.allow_writes("deploy_safe: migrate"):
        recorder.record_applied("documents", "9999_during_the_deploy")
    assert ("documents", "9999_during_the_deploy") in recorder.applied_migrations()


# --- the switch's own row ------------------------------------------------------------------


def test_the_deploy_mode_switch_cannot_be_turned_off_behind_the_guard_in_deploy_mode(db):
    from deployguard.models import DeployModeState

    state.enable(reason="Release 42", changed_by="ops@host")
    before = list(DeployModeState.objects.values())
    history_before = DeployModeState.history.count()
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        DeployModeState.objects.update(enabled=False)
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        DeployModeState.history.all().delete()
    assert list(DeployModeState.objects.values()) == before
    assert DeployModeState.history.count() == history_before
    assert state.current().enabled


def test_the_switch_still_turns_deploy_mode_off_and_on_in_deploy_mode(db):
    from deployguard.models import DeployModeState

    state.enable(reason="Release 42", changed_by="ops@host")
    _, was_on = state.disable(changed_by="ops@host")
    assert was_on
    assert not DeployModeState.objects.get().enabled
    state.enable(reason="Release 43", changed_by="ops@host")
    assert DeployModeState.objects.get().reason == "Release 43"
    assert DeployModeState.history.count() == 4  # created, on, off, on


# --- the guard's own cost: each statement judged once, reads pass on the first lookup ----------


def test_a_statement_is_classified_once_and_then_judged_from_the_cache(db, monkeypatch):
    classified: list[str] = []
    real_write_targets = sql_writes.write_targets
    monkeypatch.setattr(
        sql_writes, "write_targets", lambda sql: classified.append(sql) or real_write_targets(sql)
    )
    sql = 'INSERT INTO "auth_group" ("name") VALUES (%s) /* judged once */'
    with connection.cursor() as cursor:
        cursor.execute(sql, ["first"])
        cursor.execute(sql, ["second"])
    assert classified.count(sql) == 1
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, ["in deploy mode"])  # the cached verdict still asks for the state
    assert classified.count(sql) == 1
    assert sorted(Group.objects.values_list("name", flat=True)) == ["first", "second"]


def test_a_settings_change_rejudges_statements_already_cached(db, settings):
    sql = 'INSERT INTO "auth_group" ("name") VALUES (%s) /* rejudged */'
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, ["refused"])
    settings.DEPLOYGUARD_WRITABLE_TABLES = ["auth_group"]
    with connection.cursor() as cursor:
        cursor.execute(sql, ["allowlisted"])
    settings.DEPLOYGUARD_WRITABLE_TABLES = ["django_session"]
    state.prime_cache(state.current())  # the settings change forgot the state too
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, ["refused again"])
    assert list(Group.objects.values_list("name", flat=True)) == ["allowlisted"]


def test_the_statement_cache_is_bounded_and_a_full_cache_starts_again(db, monkeypatch):
    monkeypatch.setattr(guard, "STATEMENT_CACHE_LIMIT", 3)
    with connection.cursor() as cursor:
        for number in range(5):
            cursor.execute(f"SELECT {number} /* bounded */")
    assert 1 <= guard.statements_cached() <= 3
    assert guard.is_cached("SELECT 4 /* bounded */")


def test_statements_that_are_not_text_are_judged_every_time_and_still_refused(db):
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(b"INSERT INTO auth_group (name) VALUES ('bytes')")
    assert not guard.is_cached(b"INSERT INTO auth_group (name) VALUES ('bytes')")
    assert not Group.objects.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO auth_group\x00 (name) VALUES ('a NUL byte in the name')",
        "INSERT INTO auth_group (name) VALUES ('a NUL byte after it')\x00",
        "INSERT INTO \uff41uth_group (name) VALUES ('a full-width letter')",
        "/* django_session */ INSERT INTO auth_group (name) VALUES ('an allowlisted name in a comment')",
        "INSERT INTO django_session SELECT 1; INSERT INTO auth_group (name) VALUES ('second statement')",
    ],
)
def test_writes_dressed_as_something_else_are_still_refused(db, sql):
    state.enable(reason="Release 42", changed_by="ops@host")

    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)

    assert not Group.objects.exists()
