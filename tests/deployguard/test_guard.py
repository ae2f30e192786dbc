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
from deployguard import guard, state
from deployguard.guard import UNKNOWN_TABLE, write_targets
from documents import services
from documents.models import Submission, service_write
from tests.deployguard.support import snapshot
from tests.factories import SubmissionFactory


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('INSERT INTO "auth_group" ("name") VALUES (%s)', [("INSERT", "auth_group")]),
        ("insert into auth_group (name) values ('x')", [("INSERT", "auth_group")]),
        ("  /* seeded */ -- note\n INSERT INTO auth_group (name) VALUES (%s)", [("INSERT", "auth_group")]),
        ("(INSERT INTO auth_group (name) VALUES (%s))", [("INSERT", "auth_group")]),
        ("INSERT OR REPLACE INTO auth_group (name) VALUES (%s)", [("INSERT", "auth_group")]),
        ("REPLACE INTO auth_group (name) VALUES (%s)", [("REPLACE", "auth_group")]),
        ('UPDATE "public"."auth_group" SET "name" = %s', [("UPDATE", "auth_group")]),
        ("update only auth_group set name = 'x'", [("UPDATE", "auth_group")]),
        ('DELETE FROM "auth_group" WHERE "id" IN (%s, %s)', [("DELETE", "auth_group")]),
        (
            "WITH moved AS (DELETE FROM auth_group RETURNING name) INSERT INTO auth_user (username) "
            "SELECT name FROM moved",
            [("DELETE", "auth_group"), ("INSERT", "auth_user")],
        ),
        ("with x as (select 1) insert into auth_group (name) select 'a' from x", [("INSERT", "auth_group")]),
        (
            "MERGE INTO auth_group g USING src s ON g.id = s.id WHEN MATCHED THEN DELETE",
            [("MERGE", "auth_group")],
        ),
        ("COPY auth_group (name) FROM STDIN", [("COPY", "auth_group")]),
        (
            "TRUNCATE TABLE auth_group, auth_user CASCADE",
            [("TRUNCATE", "auth_group"), ("TRUNCATE", "auth_user")],
        ),
        ("SELECT 1; DELETE FROM auth_group", [("DELETE", "auth_group")]),
        ('CREATE TABLE "documents_extra" ("id" integer)', [("CREATE", "documents_extra")]),
        ('ALTER TABLE "documents_submission" ADD COLUMN "x" int', [("ALTER", "documents_submission")]),
        ('DROP TABLE IF EXISTS "a", "b"', [("DROP", "a"), ("DROP", "b")]),
        (
            'CREATE UNIQUE INDEX "ix" ON "documents_submission" ("title")',
            [("CREATE", "documents_submission")],
        ),
        ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", [("CREATE", UNKNOWN_TABLE)]),
        ("DO $$ BEGIN DELETE FROM auth_group; END $$", [("DO", UNKNOWN_TABLE)]),
        ('INSERT INTO "auth_group" ("name") VALUES (%s), (%s), (%s)', [("INSERT", "auth_group")]),
    ],
)
def test_writes_are_recognised_however_they_are_written(sql, expected):
    assert list(write_targets(sql)) == expected


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "auth_group"."id", "auth_group"."name" FROM "auth_group" WHERE "name" = %s',
        'SELECT * FROM "documents_submission" FOR UPDATE',
        "SELECT * FROM auth_group FOR NO KEY UPDATE",
        "SELECT 'DELETE FROM auth_group; INSERT INTO x' AS text_not_sql",
        'SELECT "update", "delete" FROM "t"',
        "SELECT replace(name, 'a', 'b') FROM auth_group",
        "COPY auth_group TO STDOUT",
        "SELECT created_at, updated_at FROM documents_submission -- insert into x\n",
        "SAVEPOINT s1",
        "LOCK TABLE auth_group IN SHARE MODE",
        'CREATE DATABASE "test_deploysafe"',
    ],
)
def test_reads_are_not_mistaken_for_writes(sql):
    assert write_targets(sql) == ()


def test_upsert_is_one_write_to_its_own_table():
    sql = "INSERT INTO auth_group (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
    assert write_targets(sql) == (("INSERT", "auth_group"),)


def test_deployguard_tables_and_the_allowlist_are_not_protected_and_everything_else_is(settings):
    assert not guard.is_protected("deployguard_deploymodestate")
    assert not guard.is_protected("new__deployguard_deploymodestate")  # SQLite's table rebuild
    assert not guard.is_protected("django_session")
    assert guard.is_protected("auth_group")
    assert guard.is_protected("a_table_created_tomorrow")
    assert guard.is_protected(UNKNOWN_TABLE)
    settings.DEPLOYGUARD_WRITABLE_TABLES = ["auth_group"]
    assert not guard.is_protected("auth_group")
    assert guard.is_protected("django_session")


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
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), service_write():
        submission.save()
    assert snapshot() == before


def test_a_simple_history_revert_is_refused_in_deploy_mode(db, superuser):
    submission = SubmissionFactory(title="First title", actor=superuser)
    services.update_submission(actor=superuser, submission=submission, title="Second title", submitted_by="G")
    before = snapshot()
    state.enable(reason="Release 42", changed_by="ops@host")
    first = submission.history.earliest()
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), service_write():
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


# --- review findings: E-strings, prepared statements, the fast path, the switch's own row -----


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            r"SELECT E'\'' ; UPDATE documents_submission SET status='published'; --'",
            [("UPDATE", "documents_submission")],
        ),
        (r"select e'\\' ; delete from auth_group", [("DELETE", "auth_group")]),
        ("EXECUTE publish_everything(1)", [("EXECUTE", UNKNOWN_TABLE)]),
        (
            "PREPARE publish_everything AS UPDATE documents_submission SET status = $1",
            [("PREPARE", UNKNOWN_TABLE)],
        ),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY public.stats", [("REFRESH", "stats")]),
        ("SELECT * INTO TEMP copied FROM auth_group", [("SELECT INTO", "copied")]),
    ],
)
def test_escape_strings_prepared_statements_and_refreshes_are_recognised_as_writes(sql, expected):
    assert list(write_targets(sql)) == expected


@pytest.mark.parametrize(
    "sql",
    [
        r"SELECT E'it\'s ; UPDATE auth_group SET name = 1' FROM auth_group",
        "SELECT name FROM auth_group WHERE name = 'into the night'",
    ],
)
def test_escape_strings_and_the_word_into_inside_literals_are_still_reads(sql):
    assert write_targets(sql) == ()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1 INTO copied", [("SELECT INTO", "copied")]),
        ("/* /* */ SELECT 1 */ UPDATE auth_group SET name = 'x'", [("UPDATE", "auth_group")]),
        ("SELECT 1 ; UPDATE auth_group SET name = 'x'", [("UPDATE", "auth_group")]),
    ],
)
def test_the_select_fast_path_does_not_hide_writes(sql, expected):
    assert list(write_targets(sql)) == expected


def test_a_large_select_is_classified_as_a_read_without_tokenizing(monkeypatch):
    ids = ", ".join(["%s"] * 2000)
    # "comment" is a column here, and one of the words that used to send a statement to the tokenizer.
    sql = f'SELECT "documents_submission"."comment" FROM "documents_submission" WHERE "id" IN ({ids})'  # noqa: S608

    def tokenized(*args, **kwargs):
        raise AssertionError("the fast path should have classified this SELECT")

    monkeypatch.setattr(guard, "_tokenize", tokenized)
    assert len(sql) > 4096
    assert write_targets(sql) == ()


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


sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="executescript is sqlite3's")


@sqlite_only
def test_executescript_cannot_write_a_protected_table_in_deploy_mode(deploy_mode_on_committed):
    import sqlite3

    state.disable(changed_by="ops@host")
    Group.objects.create(name="existing")
    state.enable(reason="Release 42", changed_by="ops@host")
    before = snapshot()
    with pytest.raises((DatabaseError, sqlite3.DatabaseError), match="not authorized"):
        with connection.cursor() as cursor:
            cursor.executescript("UPDATE auth_group SET name = 'renamed through executescript';")
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        connection.connection.executescript("DELETE FROM auth_group;")
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        with guard.allow_schema_changes("test: migrate"):  # the schema, not the rows
            connection.connection.executescript("DELETE FROM auth_group;")
    assert snapshot() == before


@sqlite_only
def test_executescript_is_refused_when_deploymentmode_is_set_in_the_environment(
    transactional_db, monkeypatch
):
    import sqlite3

    Group.objects.create(name="existing")
    before = snapshot()
    monkeypatch.setenv("DEPLOYMENT_MODE", "true")
    state.clear_cache()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        with connection.cursor() as cursor:
            cursor.executescript("UPDATE auth_group SET name = 'published';")
    monkeypatch.setenv("DEPLOYMENT_MODE", "false")
    state.clear_cache()
    assert snapshot() == before


@sqlite_only
def test_executescript_writes_pass_when_deploy_mode_is_off_or_inside_allow_writes(deploy_mode_on_committed):
    with deployguard.allow_writes("test: a script inside the allowance"):
        connection.connection.executescript("INSERT INTO auth_group (name) VALUES ('allowed');")
    state.disable(changed_by="ops@host")
    assert not state.current().enabled  # read now: the script below is judged on this
    with connection.cursor() as cursor:
        cursor.executescript("INSERT INTO auth_group (name) VALUES ('off');")
    assert sorted(Group.objects.values_list("name", flat=True)) == ["allowed", "off"]


@sqlite_only
def test_the_sqlite_authorizer_lets_the_schema_allowance_rebuild_a_table(db):
    state.enable(reason="Release 42", changed_by="ops@host")
    with guard.allow_schema_changes("test: migrate"), connection.cursor() as cursor:
        cursor.execute('CREATE TABLE "documents_rebuilt" ("id" integer)')
        cursor.execute('CREATE TABLE "new__documents_rebuilt" ("id" integer, "x" integer)')
        cursor.execute('INSERT INTO "new__documents_rebuilt" ("id") SELECT "id" FROM "documents_rebuilt"')
        cursor.execute('DROP TABLE "documents_rebuilt"')
        cursor.execute('ALTER TABLE "new__documents_rebuilt" RENAME TO "documents_rebuilt"')
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        with guard.allow_schema_changes("test: migrate"), connection.cursor() as cursor:
            cursor.execute('INSERT INTO "documents_rebuilt" ("id") VALUES (1)')


# --- the guard's own cost: each statement judged once, reads pass on the first lookup ----------


def test_a_statement_is_classified_once_and_then_judged_from_the_cache(db, monkeypatch):
    classified: list[str] = []
    real_write_targets = guard.write_targets
    monkeypatch.setattr(guard, "write_targets", lambda sql: classified.append(sql) or real_write_targets(sql))
    monkeypatch.setattr(guard, "_checks", {})
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
    monkeypatch.setattr(guard, "_checks", {})
    monkeypatch.setattr(guard, "_CHECKS_LIMIT", 3)
    with connection.cursor() as cursor:
        for number in range(5):
            cursor.execute(f"SELECT {number}")
    assert 1 <= len(guard._checks) <= 3


def test_statements_that_are_not_text_are_judged_every_time_and_still_refused(db):
    state.enable(reason="Release 42", changed_by="ops@host")
    with pytest.raises(deployguard.DeployModeActive), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(b"INSERT INTO auth_group (name) VALUES ('bytes')")
    assert b"INSERT INTO auth_group (name) VALUES ('bytes')" not in guard._checks
    assert not Group.objects.exists()


def test_the_sqlite_authorizer_table_is_built_once_per_process():
    assert guard._sqlite_write_actions() is guard._sqlite_write_actions()
    assert guard._sqlite_authorizer() is not guard._sqlite_authorizer()  # each connection its own DROP memory


def test_the_sqlite_authorizer_passes_reads_without_asking_for_the_state(monkeypatch):
    import sqlite3

    def unreachable() -> None:
        raise AssertionError("a read asked for the deploy mode state")

    monkeypatch.setattr(state, "cached", unreachable)
    authorize = guard._sqlite_authorizer()
    assert authorize(sqlite3.SQLITE_READ, "auth_group", "name", "main", None) == sqlite3.SQLITE_OK
    assert authorize(sqlite3.SQLITE_SELECT, None, None, None, None) == sqlite3.SQLITE_OK


def test_the_sqlite_authorizer_refuses_a_protected_write_when_the_state_is_unknown(monkeypatch):
    import sqlite3

    monkeypatch.setattr(state, "cached", lambda: None)  # cache expired, nothing judged: fail closed
    authorize = guard._sqlite_authorizer()
    assert authorize(sqlite3.SQLITE_INSERT, "auth_group", None, "main", None) == sqlite3.SQLITE_DENY
    off = state.DeployModeStatus(enabled=False, source="database")
    monkeypatch.setattr(state, "cached", lambda: off)
    assert authorize(sqlite3.SQLITE_INSERT, "auth_group", None, "main", None) == sqlite3.SQLITE_OK


@sqlite_only
def test_the_wrapper_hands_the_state_it_read_to_the_sqlite_authorizer(transactional_db, settings):
    import sqlite3

    # transactional_db: executescript commits first. Nothing cached: the authorizer has only the hand-over.
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (name) VALUES (%s) /* a fresh prepare */", ["handed over"])
    assert getattr(connection, guard.JUDGED_ATTRIBUTE) == [None]  # and taken back after the statement
    assert Group.objects.filter(name="handed over").exists()
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):  # outside the wrapper: fail closed
        connection.connection.executescript("INSERT INTO auth_group (name) VALUES ('raw');")
