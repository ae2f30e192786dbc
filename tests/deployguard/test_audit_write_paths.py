"""manage.py audit_write_paths: the catalogue of write paths, and the gate on it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from deployguard.management.commands.audit_write_paths import (
    CANNOT_PARSE,
    CLEAN,
    VIOLATIONS_FOUND,
)
from deployguard.management.commands.audit_write_paths import Command as AuditCommand
from deployguard.sql_writes import write_targets
from deployguard.write_paths import classify_sql
from deployguard.write_paths.policy import (
    FIXTURE_SHIPS_PROTECTED,
    NOT_A_DIRECTORY,
    OUTSIDE_ALLOWED,
    UNKNOWN_PROTECTED,
    UNKNOWN_SETTING,
)
from tests.utils import run_command

WRITE_PATHS_DOC = Path(django_settings.BASE_DIR) / "docs" / "WRITE_PATHS.md"


@pytest.fixture
def planted(tmp_path, settings):
    """Write a tree of modules under tmp_path; return a function that audits it as JSON."""
    settings.DEPLOYGUARD_WRITE_PATHS = {"allowed": ["documents/services.py"]}

    def plant(files: dict[str, str]) -> tuple[dict, str, int]:
        for name, source in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).lstrip())
        stdout, stderr, code = run_command("audit_write_paths", "--format", "json", "--root", str(tmp_path))
        return json.loads(stdout), stderr, code

    return plant


def _places(findings: list[dict]) -> set[tuple[str, int, str, str | None]]:
    return {(f["file"], f["line"], f["kind"], f["model"]) for f in findings}


# -- the project itself --------------------------------------------------------------------


def test_project_passes_and_its_catalogue_lists_the_publish_service():
    stdout, stderr, code = run_command("audit_write_paths")

    assert (code, stderr) == (0, "")
    assert CLEAN in stdout
    assert "documents.services.publish_submission  instantiation + save  documents.PublishedDraft" in stdout


def test_project_json_catalogue_names_what_the_publish_service_writes():
    stdout, _, code = run_command("audit_write_paths", "--format", "json")
    report = json.loads(stdout)

    assert code == 0
    assert report["violations"] == []
    assert report["functions_that_write"]["documents.services.publish_submission"] == [
        "documents.DraftNumber",
        "documents.PublishedDraft",
        "documents.Submission",
    ]
    assert "documents.PublishedDraft" in report["protected_models"]
    assert report["allowed"] == [
        "deployguard/backup.py::restore_database",
        "deployguard/backup.py::_drop_tables_not_in",
        "deployguard/jobs/queue.py::kept_across_restore",
        "documents/services.py",
    ]
    entry_points = {(e["function"], e["kind"]) for e in report["entry_points"]}
    assert ("documents.apps.DocumentsConfig.ready", "AppConfig.ready") in entry_points
    assert ("documents.signals.refuse_direct_save", "signal receiver") in entry_points


def test_project_queryset_guard_delegating_to_super_is_not_a_write_path():
    stdout, _, _ = run_command("audit_write_paths", "--format", "json")
    writes = json.loads(stdout)["writes"]

    assert [w for w in writes if w["file"] in {"documents/models.py", "documents/signals.py"}] == []


def test_docs_write_paths_is_current():
    stdout, _, code = run_command("audit_write_paths", "--format", "markdown")

    assert code == 0
    assert WRITE_PATHS_DOC.read_text() == stdout, (
        "docs/WRITE_PATHS.md is stale: run `make write-paths` and commit the difference."
    )


def test_help_says_what_the_exit_statuses_mean():
    assert "Exit status: 0 no violations; 1 violations (listed); 2 misuse" in AuditCommand.help


# -- planted violations ---------------------------------------------------------------------


def test_post_migrate_receiver_that_publishes_is_a_violation(planted):
    report, stderr, code = planted(
        {
            "sync/receivers.py": """
            from django.db.models.signals import post_migrate
            from django.dispatch import receiver
            from django.utils import timezone

            from documents.models import PublishedDraft, Submission


            @receiver(post_migrate)
            def publish_approved(sender, **kwargs):
                for submission in Submission.objects.filter(status="approved"):
                    PublishedDraft.objects.create(
                        name="rfc9999", submission=submission, published_at=timezone.now()
                    )
            """
        }
    )

    assert code == 1
    assert stderr == f"CommandError: {VIOLATIONS_FOUND.format(count=2)}\n"
    violations = report["violations"]
    assert {(v["file"], v["line"], v["function"]) for v in violations} == {
        ("sync/receivers.py", 11, "sync.receivers.publish_approved")
    }
    reasons = sorted(v["reason"] for v in violations)
    assert reasons[0] == (
        "runs at start-up: reached from post_migrate signal receiver sync.receivers.publish_approved "
        "(sync/receivers.py:9); start-up code must not write"
    )
    assert reasons[1] == OUTSIDE_ALLOWED.format(model="documents.PublishedDraft")


def test_post_migrate_receiver_calling_an_allowed_service_is_still_a_violation(planted):
    report, _, code = planted(
        {
            "documents/services.py": """
            from documents.models import PublishedDraft


            def publish(*, submission):
                draft = PublishedDraft(name="rfc1", submission=submission)
                draft.save()
                return draft
            """,
            "sync/apps.py": """
            from django.db.models.signals import post_migrate

            from documents import services


            def seed_after_migrate(sender, **kwargs):
                services.publish(submission=None)


            post_migrate.connect(seed_after_migrate, dispatch_uid="sync.seed")
            """,
        }
    )

    assert code == 1
    [violation] = report["violations"]
    assert (violation["file"], violation["line"], violation["function"]) == (
        "documents/services.py",
        6,
        "documents.services.publish",
    )
    assert violation["reason"] == (
        "runs at start-up: reached from post_migrate signal receiver sync.apps.seed_after_migrate "
        "(sync/apps.py:10) via documents.services.publish; start-up code must not write"
    )


def test_app_config_ready_that_creates_rows_is_a_violation_even_through_helpers(planted):
    report, _, code = planted(
        {
            "sync/apps.py": """
            from django.apps import AppConfig
            from django.contrib.auth import get_user_model

            from documents.models import Submission
            from sync.seeding import seed_demo_users


            class SyncConfig(AppConfig):
                name = "sync"

                def ready(self):
                    self._seed()
                    seed_demo_users()

                def _seed(self):
                    Submission.objects.get_or_create(ml_number="ML-900", defaults={"title": "Seed"})
            """,
            "sync/seeding.py": """
            from django.contrib.auth import get_user_model


            def seed_demo_users():
                get_user_model().objects.create_user(username="demo")
            """,
        }
    )

    assert code == 1
    assert {(v["file"], v["line"], v["kind"], v["model"]) for v in report["violations"]} == {
        ("sync/apps.py", 16, "get_or_create", "documents.Submission"),
        ("sync/seeding.py", 5, "objects.create", "auth.User"),
    }
    startup = [v["reason"] for v in report["violations"] if v["file"] == "sync/seeding.py"]
    assert startup == [
        "runs at start-up: reached from AppConfig.ready sync.apps.SyncConfig.ready (sync/apps.py:11) "
        "via sync.seeding.seed_demo_users; start-up code must not write"
    ]


def test_helper_module_that_bulk_creates_drafts_is_a_violation(planted):
    report, _, code = planted(
        {
            "sync/helpers.py": """
            from documents.models import PublishedDraft


            def make_drafts(submissions, user):
                return PublishedDraft.objects.bulk_create(
                    [PublishedDraft(name=f"rfc{n}", submission=s, published_by=user) for n, s in submissions]
                )
            """
        }
    )

    assert code == 1
    assert [(v["file"], v["line"], v["function"], v["kind"], v["model"]) for v in report["violations"]] == [
        ("sync/helpers.py", 5, "sync.helpers.make_drafts", "bulk_create", "documents.PublishedDraft")
    ]


def test_raw_sql_inserting_into_a_documents_table_is_a_violation(planted):
    report, _, code = planted(
        {
            "sync/raw.py": '''
            from django.db import connection

            from documents.models import PublishedDraft


            def import_rows(rows):
                with connection.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO documents_submission (ml_number, title) VALUES (%s, %s)", rows
                    )
                    cursor.execute(f"""
                        -- backfill
                        WITH moved AS (SELECT 1) UPDATE "{PublishedDraft._meta.db_table}" SET status = 'x'
                    """)
                    cursor.execute("SELECT count(*) FROM documents_submission")
            ''',
        }
    )

    assert code == 1
    assert {(v["file"], v["line"], v["kind"], v["model"]) for v in report["violations"]} == {
        ("sync/raw.py", 8, "raw SQL write", "documents.Submission"),
        ("sync/raw.py", 11, "raw SQL write", "documents.PublishedDraft"),
    }


def test_data_migration_creating_submissions_is_a_violation(planted):
    report, _, code = planted(
        {
            "sync/migrations/0002_seed.py": """
            from django.db import migrations


            def seed(apps, schema_editor):
                Submission = apps.get_model("documents", "Submission")
                Submission.objects.create(ml_number="ML-901", title="Seeded")


            class Migration(migrations.Migration):
                dependencies = [("documents", "0001_initial")]
                operations = [
                    migrations.RunPython(seed, migrations.RunPython.noop),
                    migrations.RunSQL("CREATE INDEX seed_idx ON documents_submission (title)"),
                ]
            """
        }
    )

    assert code == 1
    assert [(v["file"], v["line"], v["function"], v["model"]) for v in report["violations"]] == [
        ("sync/migrations/0002_seed.py", 6, "sync.migrations.0002_seed.seed", "documents.Submission")
    ]
    entry_points = {(e["line"], e["kind"], e["detail"]) for e in report["entry_points"]}
    assert (12, "migration RunPython", "runs sync.migrations.0002_seed.seed") in entry_points
    assert (13, "migration RunSQL", "") in entry_points
    # The schema change is catalogued, not a violation: it is what migrations are for.
    assert ("sync/migrations/0002_seed.py", 13, "raw SQL schema change", "documents.Submission") in _places(
        report["writes"]
    )


def test_aliased_imports_are_resolved_to_their_models(planted):
    report, _, code = planted(
        {
            "sync/alias.py": """
            import documents.models as dm
            from documents.models import PublishedDraft as D


            def sneak(submission, user):
                D.objects.create(name="rfc7", submission=submission, published_by=user)
                dm.Submission(ml_number="ML-7", title="t").save()
                dm.Submission._default_manager.filter(pk=1).update(title="x")
                draft = D.objects.get(pk=1)
                draft.delete()
            """
        }
    )

    assert code == 1
    assert {(v["line"], v["kind"], v["model"]) for v in report["violations"]} == {
        (6, "objects.create", "documents.PublishedDraft"),
        (7, "instantiation + save", "documents.Submission"),
        (8, "queryset update", "documents.Submission"),
        (10, "instance delete", "documents.PublishedDraft"),
    }


def test_parameters_annotated_with_a_model_are_typed(planted):
    report, _, code = planted(
        {
            "sync/edit.py": """
            from django.db.models import QuerySet
            from documents.models import Submission


            def retitle(submission: Submission, others: "QuerySet[Submission]", thing):
                submission.save(); others.update(title="x"); thing.delete()
            """
        }
    )

    assert code == 1
    assert _places(report["writes"]) == {
        ("sync/edit.py", 6, "instance save", "documents.Submission"),
        ("sync/edit.py", 6, "queryset update", "documents.Submission"),
        ("sync/edit.py", 6, "instance delete", None),
    }
    assert len(report["violations"]) == 2


def test_shipped_fixture_with_protected_rows_is_a_violation(planted):
    report, _, code = planted(
        {
            "sync/fixtures/demo.json": """
            [
              {"model": "auth.group", "pk": 1, "fields": {"name": "editors"}},
              {"model": "documents.submission", "pk": 1, "fields": {"ml_number": "ML-1"}},
              {"model": "documents.submission", "pk": 2, "fields": {"ml_number": "ML-2"}}
            ]
            """
        }
    )

    assert code == 1
    assert report["violations"] == [
        {
            "file": "sync/fixtures/demo.json",
            "line": 3,
            "function": "loaddata",
            "kind": "fixture rows",
            "model": "documents.Submission",
            "detail": "2 row(s)",
            "reason": FIXTURE_SHIPS_PROTECTED.format(model="documents.Submission"),
        }
    ]
    assert ("sync/fixtures/demo.json", 2, "fixture rows", "auth.Group") in _places(report["writes"])


def test_text_report_names_each_violation_by_file_and_line(planted, tmp_path):
    planted(
        {"sync/helpers.py": "from documents.models import Submission\nSubmission.objects.all().delete()\n"}
    )

    stdout, stderr, code = run_command("audit_write_paths", "--root", str(tmp_path))

    assert code == 1
    assert stderr == f"CommandError: {VIOLATIONS_FOUND.format(count=2)}\n"
    assert (
        "  sync/helpers.py:2  sync.helpers.<module>  queryset delete  documents.Submission: "
        + OUTSIDE_ALLOWED.format(model="documents.Submission")
    ) in stdout
    assert "runs when sync.helpers is imported; start-up code must not write" in stdout


# -- what is not a violation -----------------------------------------------------------------


def test_reads_are_not_reported(planted):
    report, stderr, code = planted(
        {
            "sync/reads.py": """
            from django.db import connection

            from documents.models import PublishedDraft, Submission


            def counts():
                Submission.objects.filter(status="approved").count()
                Submission.objects.get(pk=1)
                PublishedDraft.objects.exists()
                list(Submission.objects.raw("SELECT * FROM documents_submission"))
                with connection.cursor() as cursor:
                    cursor.execute("  /* report */ (SELECT count(*) FROM documents_submission)")
                    cursor.execute("WITH recent AS (SELECT 1) SELECT * FROM recent")
                options = {}
                options.update({"a": 1})
                cache = {}
                cache.pop("key", None)
            """
        }
    )

    assert (code, stderr) == (0, "")
    assert report["writes"] == []
    assert report["violations"] == []


def test_writes_in_allowed_places_and_tests_are_not_violations(planted):
    report, _, code = planted(
        {
            "documents/services.py": """
            from documents.models import Submission


            def create(*, title):
                return Submission.objects.create(title=title)
            """,
            "tests/test_seed.py": "from documents.models import Submission\nSubmission.objects.create()\n",
            "sync/tests/helpers.py": "from documents.models import Submission\nSubmission.objects.create()\n",
            "conftest.py": "from documents.models import Submission\nSubmission.objects.create()\n",
        }
    )

    assert code == 0
    assert _places(report["writes"]) == {
        ("documents/services.py", 5, "objects.create", "documents.Submission")
    }


def test_queryset_override_delegating_to_super_is_not_a_write(planted):
    report, _, code = planted(
        {
            "sync/models.py": """
            from django.db import models


            class GuardedQuerySet(models.QuerySet):
                def update(self, **kwargs):
                    return super().update(**kwargs)

                def bulk_create(self, objs, *args, **kwargs):
                    return super().bulk_create(objs, *args, **kwargs)
            """
        }
    )

    assert (code, report["writes"]) == (0, [])


def test_unattended_entry_points_are_catalogued(planted):
    report, _, code = planted(
        {
            "sync/jobs.py": """
            import threading
            from concurrent.futures import ThreadPoolExecutor

            from celery import shared_task
            from django.core.signals import request_started
            from django.db.models.signals import post_save


            @shared_task
            def nightly():
                pass


            def on_request(sender, **kwargs):
                pass


            def start():
                threading.Thread(target=nightly).start()
                with ThreadPoolExecutor() as pool:
                    pool.submit(nightly)
                nightly.delay()


            request_started.connect(on_request)
            post_save.connect(on_request, sender="documents.Submission")
            """,
            "sync/management/commands/sync_drafts.py": """
            from django.core.management.base import BaseCommand


            class Command(BaseCommand):
                def handle(self, *args, **options):
                    pass
            """,
        }
    )

    assert code == 0
    assert {(e["line"], e["function"], e["kind"], e["detail"]) for e in report["entry_points"]} == {
        (10, "sync.jobs.nightly", "task definition", "@shared_task"),
        (19, "sync.jobs.start", "thread launch", "threading.Thread"),
        (20, "sync.jobs.start", "executor", "concurrent.futures.ThreadPoolExecutor"),
        (22, "sync.jobs.start", "task enqueue", ".delay()"),
        (25, "sync.jobs.on_request", "signal receiver", "request_started"),
        (26, "sync.jobs.on_request", "signal receiver", "post_save"),
        (
            5,
            "sync.management.commands.sync_drafts.Command.handle",
            "management command",
            "manage.py sync_drafts",
        ),
    }


# -- misuse ----------------------------------------------------------------------------------


def test_unknown_format_is_misuse():
    stdout, stderr, code = run_command("audit_write_paths", "--format", "yaml")

    assert (stdout, code) == ("", 2)
    assert stderr == (
        "CommandError: Error: argument --format: invalid choice: 'yaml' "
        "(choose from 'text', 'json', 'markdown')\n"
    )


def test_missing_root_is_misuse(tmp_path):
    missing = tmp_path / "nowhere"

    stdout, stderr, code = run_command("audit_write_paths", "--root", str(missing))

    assert (stdout, code) == ("", 2)
    assert (
        stderr == f"CommandError: {NOT_A_DIRECTORY.format(root=missing, setting='DEPLOYGUARD_WRITE_PATHS')}\n"
    )


def test_file_that_cannot_be_parsed_fails_the_audit(planted):
    _, stderr, code = planted({"sync/broken.py": "def broken(:\n"})

    assert code == 2
    assert stderr == (
        f"sync/broken.py:1: cannot parse (invalid syntax)\nCommandError: {CANNOT_PARSE.format(count=1)}\n"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            {"allow": ["x.py"]},
            UNKNOWN_SETTING.format(
                setting="DEPLOYGUARD_WRITE_PATHS",
                keys=["allow"],
                known=["allowed", "exclude", "lifts_allowed", "protected", "root", "startup_allowed"],
            ),
        ),
        (
            {"protected": ["documents.Nope"]},
            UNKNOWN_PROTECTED.format(setting="DEPLOYGUARD_WRITE_PATHS", pattern="documents.Nope"),
        ),
    ],
)
def test_wrong_setting_is_misuse(settings, option, message):
    settings.DEPLOYGUARD_WRITE_PATHS = option

    stdout, stderr, code = run_command("audit_write_paths")

    assert (stdout, stderr, code) == ("", f"CommandError: {message}\n", 2)


def test_protected_setting_narrows_the_policy(planted, settings):
    settings.DEPLOYGUARD_WRITE_PATHS = {"protected": ["documents.PublishedDraft"]}

    report, _, code = planted(
        {
            "sync/helpers.py": """
            from documents.models import PublishedDraft, Submission


            def touch():
                Submission.objects.filter(pk=1).update(title="x")
                PublishedDraft.objects.filter(pk=1).delete()
            """
        }
    )

    assert code == 1
    assert [(v["line"], v["kind"], v["model"]) for v in report["violations"]] == [
        (6, "queryset delete", "documents.PublishedDraft")
    ]


# -- SQL classification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("INSERT INTO documents_submission VALUES (1)", ("DML", "documents_submission")),
        (
            '  -- seed\n/* x */ (insert into "Documents_Submission" values (1))',
            ("DML", "documents_submission"),
        ),
        ("update public.documents_publisheddraft set status = 'x'", ("DML", "documents_publisheddraft")),
        ("DELETE FROM ONLY documents_submission", ("DML", "documents_submission")),
        (
            "WITH gone AS (DELETE FROM documents_submission RETURNING id) SELECT 1",
            ("DML", "documents_submission"),
        ),
        ("TRUNCATE TABLE documents_draftnumber", ("DML", "documents_draftnumber")),
        ("REPLACE INTO documents_submission VALUES (1)", ("DML", "documents_submission")),
        ("MERGE INTO documents_submission USING x ON true", ("DML", "documents_submission")),
        ("COPY documents_submission FROM STDIN", ("DML", "documents_submission")),
        ("ALTER TABLE documents_submission ADD COLUMN x int", ("DDL", "documents_submission")),
        ("DROP TABLE IF EXISTS documents_submission", ("DDL", "documents_submission")),
        ("SELECT * FROM documents_submission", (None, None)),
        ("WITH r AS (SELECT 1) SELECT * FROM r", (None, None)),
        ("", (None, None)),
    ],
)
def test_classify_sql(sql, expected):
    assert classify_sql(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # A second statement after a read: the audit's regexes judged the first word only.
        ("SELECT 1; DELETE FROM documents_submission", ("DML", "documents_submission")),
        # Write words inside a literal or a comment: the regexes saw a write.
        ("WITH x AS (SELECT 'DELETE FROM documents_submission') SELECT * FROM x", (None, None)),
        ("WITH x AS (SELECT 1) SELECT * FROM x -- then UPDATE documents_submission", (None, None)),
        # COPY ... TO only reads; SELECT ... INTO and CREATE TABLE create a table the regexes could not name.
        ("COPY documents_submission TO STDOUT", (None, None)),
        ("SELECT * INTO documents_copy FROM documents_submission", ("DDL", "documents_copy")),
        ("CREATE TABLE documents_extra (id integer)", ("DDL", "documents_extra")),
        # A block whose body is not parsed writes to a table nobody can name: the regexes saw no write.
        ("DO $$ BEGIN DELETE FROM documents_submission; END $$", ("DML", None)),
        ("EXECUTE publish_everything(1)", ("DML", None)),
        # A table named by code (an f-string's value) is unknown, not the literal part of its name.
        ("INSERT INTO documents_\x00 VALUES (1)", ("DML", None)),  # \x00: UNKNOWN_PART
        ("UPDATE \x00 SET status = 1", ("DML", None)),
    ],
)
def test_the_audit_classifies_sql_as_the_guard_does_where_its_own_regexes_used_to_disagree(sql, expected):
    assert classify_sql(sql) == expected
    assert bool(write_targets(sql)) == (expected[0] is not None)  # the guard would refuse it in deploy mode


def test_a_write_hidden_after_a_read_in_one_string_is_a_violation(planted):
    report, _, code = planted(
        {
            "sync/hidden.py": """
            from django.db import connection


            def tidy():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1; DELETE FROM documents_submission WHERE title = 'old'")
            """,
        }
    )

    assert code == 1
    assert [(v["file"], v["line"], v["kind"], v["model"]) for v in report["violations"]] == [
        ("sync/hidden.py", 6, "raw SQL write", "documents.Submission")
    ]


def test_the_rogue_start_up_app_of_the_model_guard_tests_is_caught():
    rogue = Path(django_settings.BASE_DIR) / "tests" / "rogue"

    stdout, _, code = run_command("audit_write_paths", "--format", "json", "--root", str(rogue))

    assert code == 1
    assert {(v["file"], v["line"], v["kind"], v["model"]) for v in json.loads(stdout)["violations"]} == {
        ("apps.py", 15, "instantiation + save", "documents.Submission"),
        ("apps.py", 16, "objects.create", "documents.PublishedDraft"),
    }


# -- routes around the services and ways around the guards (issue 17) -----------------------

ROUTES_AROUND_THE_SERVICES = """
from django.db import connection, models

import deployguard
from deployguard import state
from deployguard.allowances import allow_writes
from documents.models import SEAL, PublishedDraft, Submission, service_write


def private_apis(submission: Submission, draft: PublishedDraft):
    submission._save_table(raw=False, cls=Submission, force_insert=True)
    Submission._base_manager._insert([submission], fields=[])
    submission._do_update(Submission._base_manager.all(), "default", 1, [], None, False)
    PublishedDraft.objects.filter(pk=draft.pk)._raw_delete(using="default")


def managers_made_at_run_time():
    models.QuerySet(model=Submission).update(title="x")
    manager = models.Manager()
    manager.model = PublishedDraft
    return manager


def raw_insert_returning():
    return list(Submission.objects.raw("INSERT INTO documents_submission (title) VALUES ('x') RETURNING id"))


def seal_opened():
    with service_write(Submission):
        pass
    with SEAL.writing(PublishedDraft):
        pass


def deploy_mode_lifted():
    with deployguard.allow_writes("seeding"):
        pass
    with allow_writes("seeding"):
        pass
    state.disable(changed_by="me")
"""


def test_routes_around_the_services_and_ways_around_the_guards_are_violations(planted):
    report, _, code = planted({"sync/rogue.py": ROUTES_AROUND_THE_SERVICES})

    assert code == 1
    found = sorted((v["line"], v["function"].rpartition(".")[2], v["kind"]) for v in report["violations"])
    assert found == [
        (10, "private_apis", "private ORM write API"),
        (11, "private_apis", "private ORM write API"),
        (12, "private_apis", "private ORM write API"),
        (13, "private_apis", "private ORM write API"),
        (17, "managers_made_at_run_time", "manager or queryset made at run time"),
        (18, "managers_made_at_run_time", "manager or queryset made at run time"),
        (24, "raw_insert_returning", "raw SQL write"),
        (28, "seal_opened", "seal opened"),
        (30, "seal_opened", "seal opened"),
        (35, "deploy_mode_lifted", "deploy-mode guard lifted"),
        (37, "deploy_mode_lifted", "deploy-mode guard lifted"),
        (39, "deploy_mode_lifted", "deploy-mode guard lifted"),
    ]
    reasons = {v["line"]: v["reason"] for v in report["violations"]}
    assert reasons[28] == (
        "opens a seal (documents.models.service_write) outside documents.services; call a service instead"
    )
    assert reasons[39].startswith("lifts the deploy-mode guard (state.disable()) in application code")
    assert reasons[10].startswith("writes through ._save_table(), around the models' own save()")


def test_the_services_may_open_the_seal_and_nothing_else_may_lift_deploy_mode(planted):
    report, _, code = planted(
        {
            "documents/services.py": """
            import deployguard
            from documents.models import Submission, service_write


            def create(submission: Submission):
                with service_write(Submission):
                    submission.save()
                with deployguard.allow_writes("not even here"):
                    pass
            """
        }
    )

    assert code == 1
    assert [(v["line"], v["kind"]) for v in report["violations"]] == [(8, "deploy-mode guard lifted")]


def test_managers_declared_on_a_model_are_not_made_at_run_time(planted):
    report, _, code = planted(
        {
            "shelf/models.py": """
            from django.db import models


            class ShelfQuerySet(models.QuerySet):
                pass


            class Shelf(models.Model):
                objects = ShelfQuerySet.as_manager()
                plain = models.Manager()
            """
        }
    )

    assert (code, report["violations"]) == (0, [])


def test_deployguard_may_write_other_apps_models_only_in_the_functions_it_names():
    """A module added anywhere under deployguard/ that writes drafts is no longer allowed by its
    place: only the restore's functions are, by name."""
    from deployguard.write_paths.policy import config_from_settings, place_matches
    from deployguard.write_paths.scanner import BULK_CREATE, Finding

    config = config_from_settings()

    def allowed(file: str, function: str) -> bool:
        module = file.removesuffix(".py").replace("/", ".")
        finding = Finding(
            file, 1, f"{module}.{function}", BULK_CREATE, "documents.PublishedDraft", module=module
        )
        return place_matches(finding, config.allowed)

    assert not allowed("deployguard/seeding.py", "make_drafts")
    assert not allowed("deployguard/backup.py", "make_drafts")
    assert not allowed("deployguard/deploy/run.py", "run")
    assert allowed("deployguard/backup.py", "restore_database")
    assert allowed("documents/services.py", "publish_submission")
