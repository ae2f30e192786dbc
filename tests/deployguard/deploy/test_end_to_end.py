"""deploy_safe end to end: each test deploys test apps into a scratch database in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deployguard.integrity import default_registry
from tests.deploy_apps.support import BASE_DIR, PYTHON, Scratch, mailed_env, subprocess_env

LEGITIMATE = {"submissions": ["ML-001"], "drafts": ["rfc1"]}


def documents_of(state: dict) -> dict:
    return {"submissions": state["submissions"], "drafts": state["drafts"]}


def test_a_harmless_schema_migration_deploys_and_is_verified(scratch: Scratch):
    before = scratch.inspect()
    assert documents_of(before) == LEGITIMATE

    result = scratch.deploy(apps="schema")

    assert result.returncode == 0, result.stderr
    after = scratch.inspect()
    assert after["migrations"]["schema"] == ["0001_initial"]
    assert not after["deploy_mode"]
    for table, fingerprint in before["fingerprints"].items():
        if table not in ("django_content_type", "auth_permission", "django_migrations"):
            assert after["fingerprints"][table] == fingerprint, table
    assert after["fingerprints"]["schema_note"]["count"] == 0
    report = scratch.report()
    assert report["exit_status"] == 0
    assert report["status"] == "succeeded"
    assert after["records"] == {report["deploy_id"]: "succeeded"}
    assert [step["name"] for step in report["steps"]][-8:] == [
        "backup, before the freeze", "deploy mode on", "backup proved at the freeze", "migrate",
        "post-check: health", "post-check: fingerprints", "post-check: integrity", "deploy mode off",
    ]  # fmt: skip
    assert all(isinstance(step["seconds"], float) for step in report["steps"])
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["migrate"]["detail"]["subprocess_started"] == "while deploy mode went on"
    # The freeze window holds every step from deploy mode on to off, and no step outside it:
    # the backup and its fingerprints are taken before it, while the site still writes.
    inside = sum(
        steps[name]["seconds"] for name in ("backup proved at the freeze", "migrate", "deploy mode off")
    )
    assert report["migrate_s"] == steps["migrate"]["seconds"]
    everything = sum(step["seconds"] for step in report["steps"])
    assert inside <= report["freeze_window_s"] <= everything - steps["backup, before the freeze"]["seconds"]
    assert f"freeze window: {report['freeze_window_s']:.2f}s with writes refused" in result.stdout
    # Counted one model at a time (threads or connections of their own), reported in the registry's order.
    assert list(steps["pre-check: integrity"]["detail"]) == [rule.id for rule in default_registry.select()]
    assert steps["backup, before the freeze"]["detail"]["while"] == "the site still writes"
    # Nothing was written between the copy and the freeze: the backup stands as taken.
    proved = steps["backup proved at the freeze"]["detail"]
    assert (proved["written_since_the_copy"], proved["copied_again"]) == ([], "nothing")
    # The post-check proved the tables migrate did not write unwritten instead of hashing them:
    # PostgreSQL by row versions, SQLite by the write counts (deployguard.written).
    compared = [
        t
        for t in before["fingerprints"]
        if t not in ("django_content_type", "auth_permission", "django_migrations")
    ]
    assert steps["post-check: fingerprints"]["detail"]["proved_unwritten"] == len(compared)
    if scratch.url.startswith("postgres"):
        # Every table was hashed once, in the pre-check's snapshot: the backup kept those fingerprints.
        fingerprinted = steps["backup, before the freeze"]["detail"]
        assert (fingerprinted["hashed"], fingerprinted["reused_from_pre_check"]) == (
            [],
            fingerprinted["tables"],
        )
    # Nothing the rules read changed since the pre-check ran them (PostgreSQL: their snapshot's
    # fingerprints; SQLite: the write counts): the same answer, not run again.
    assert steps["post-check: integrity"]["detail"]["reused"] == (
        "the tables the rules read are unchanged since the pre-check ran them"
    )
    assert steps["pre-check: write-path audit"]["detail"]["alongside"] == "the pre-checks before it"
    # Going off does not wait for other processes' caches: nothing after it needs them writing.
    assert steps["deploy mode off"]["detail"]["waited_for_other_processes"] is False
    log = [json.loads(line) for line in scratch.log_path.read_text().splitlines()]
    assert [(entry["deploy_id"], entry["exit_status"]) for entry in log] == [(report["deploy_id"], 0)]


@pytest.mark.parametrize(
    ("apps", "migration", "exception", "where"),
    [
        ("datamig", "datamig", "DeployModeActive", "deploy_apps/datamig/migrations/0001_seed_submissions.py"),
        ("receiver", "receiver", "DeployModeActive", "tests/deploy_apps/receiver/apps.py"),
        ("halfway", "halfway", "RuntimeError", "tests/deploy_apps/halfway/migrations/0001_initial.py"),
    ],
    ids=["data-migration-creating-submissions", "post-migrate-receiver-publishing", "fails-half-way"],
)
def test_the_incident_replayed_is_blocked_rolled_back_and_explained(
    scratch: Scratch, apps, migration, exception, where
):
    before = scratch.inspect()

    result = scratch.deploy(apps=apps)

    assert result.returncode == 1, result.stdout + result.stderr
    after = scratch.inspect()
    assert after["fingerprints"] == before["fingerprints"]
    assert after["migrations"] == before["migrations"]
    assert migration not in after["migrations"]
    assert documents_of(after) == LEGITIMATE
    assert not after["deploy_mode"]
    report = scratch.report()
    assert report["status"] == "rolled_back"
    assert after["records"] == {report["deploy_id"]: "rolled_back"}
    assert any(w["exception"] == exception and where in w["where"] for w in report["blocked_writes"]), report[
        "blocked_writes"
    ]
    assert where in result.stderr  # the one-line message names the writer too


def test_an_allowed_data_migration_runs_and_the_report_lists_its_rows(scratch: Scratch):
    result = scratch.deploy("--allow-data-migration", "allowed.0001_add_group", apps="allowed")

    assert result.returncode == 0, result.stderr
    report = scratch.report()
    assert report["data_migration_changes"] == {
        "allowed.0001_add_group": {"auth_group": {"added": [1], "removed": [], "changed": []}}
    }
    assert documents_of(scratch.inspect()) == LEGITIMATE


def test_an_unwritable_backup_directory_fails_the_pre_checks_and_touches_nothing(scratch: Scratch):
    before = scratch.inspect()
    blocker = scratch.directory / "not-a-directory"
    blocker.write_text("")

    result = scratch.deploy("--backup-dir", str(blocker / "backups"), apps="schema")

    assert result.returncode == 3, result.stderr
    assert "backup directory" in result.stderr
    after = scratch.inspect()
    assert after == before  # no migration, no switch of deploy mode, no record


def test_misuse_exits_2_and_an_unknown_data_migration_fails_the_pre_checks(scratch: Scratch):
    assert scratch.deploy("--allow-data-migration", "nodot", apps="schema").returncode == 2
    unknown = scratch.deploy("--allow-data-migration", "schema.0009_nope", apps="schema")
    assert unknown.returncode == 3
    assert "names no pending migration: schema.0009_nope" in unknown.stderr


def test_the_early_migrate_subprocess_starts_up_with_no_schema_changes_allowed(scratch: Scratch):
    # It starts up while deploy_safe fingerprints and backs up, so its start-up must not change
    # even the schema: migrate's allowance for schema changes comes with the word to go. The
    # hook catches its refusal, and a caught refusal still fails the deploy, naming the hook.
    note = scratch.directory / "start-up"

    result = scratch.deploy(apps="startup_ddl", DEPLOY_TEST_STARTUP_NOTE=str(note))

    assert result.returncode == 1, result.stderr
    assert note.read_text() == "DeployModeActive"  # written last by the migrate subprocess
    assert "refused and the code caught: tests/deploy_apps/startup_ddl/apps.py:18 in ready()" in result.stderr
    after = scratch.inspect()
    assert "startup_ddl_probe" not in after["fingerprints"]
    assert not after["deploy_mode"]


def test_a_start_up_hook_that_writes_stops_deploy_safe_before_anything_is_touched(scratch: Scratch):
    before = scratch.inspect()

    result = subprocess.run(
        [PYTHON, str(BASE_DIR / "manage.py"), *scratch.deploy_args()],
        cwd=BASE_DIR,
        env=subprocess_env(scratch.url, DJANGO_SETTINGS_MODULE="tests.rogue.settings"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "deploy_safe stopped at start-up: " in result.stderr
    message = result.stderr.split("deploy_safe stopped at start-up: ")[1].splitlines()[0]
    assert "tests/rogue/apps.py" in message
    assert scratch.inspect() == before  # nothing written, deploy mode never on


def test_one_deploy_at_a_time_and_a_killed_deploy_is_recovered(scratch: Scratch):
    before = scratch.inspect()
    signal_file = scratch.directory / "migrating"
    first = subprocess.Popen(
        [PYTHON, str(BASE_DIR / "manage.py"), *scratch.deploy_args()],
        cwd=BASE_DIR,
        env=subprocess_env(
            scratch.url,
            DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings",
            DEPLOYGUARD_STATE_CACHE_SECONDS="0",
            **scratch.deploy_env("sleepy", DEPLOY_TEST_SIGNAL_FILE=str(signal_file)),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not signal_file.exists():
            assert first.poll() is None, "the first deploy ended before migrating"
            assert time.monotonic() < deadline, "the first deploy never reached its migration"
            time.sleep(0.05)
        running = next(iter(scratch.inspect()["records"]))

        started = time.monotonic()
        second = scratch.deploy(apps="sleepy")
        assert second.returncode == 3
        assert f"deploy {running}" in second.stderr
        assert time.monotonic() - started < 15

        os.kill(first.pid, signal.SIGKILL)  # mid-migrate: its table is created, not recorded
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    migrating_child = int(signal_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(migrating_child):  # the migrate subprocess dies with its parent
        assert time.monotonic() < deadline, "the migrate subprocess outlived deploy_safe"
        time.sleep(0.05)

    frozen = scratch.inspect()
    assert frozen["deploy_mode"]  # fail closed
    assert frozen["records"] == {running: "running"}
    third = scratch.deploy(apps="sleepy")
    assert third.returncode == 3
    assert "deploy_safe --recover" in third.stderr

    recovered = scratch.deploy("--recover", apps="sleepy")

    assert recovered.returncode == 0, recovered.stderr
    after = scratch.inspect()
    assert not after["deploy_mode"]
    assert after["records"] == {running: "recovered"}
    assert after["fingerprints"] == before["fingerprints"]
    assert after["migrations"] == before["migrations"]
    assert documents_of(after) == LEGITIMATE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _subjects(scratch: Scratch) -> list[str]:
    outbox = scratch.directory / "outbox"
    return [
        line.removeprefix("Subject: ")
        for mail in sorted(outbox.iterdir())
        for line in mail.read_text().splitlines()
        if line.startswith("Subject: ")
    ]


def test_a_failed_migrate_whose_restore_cannot_be_verified_exits_4_and_stays_frozen(scratch: Scratch):
    result = scratch.deploy(
        apps="damaged", DEPLOY_TEST_BACKUP_DIR=str(scratch.backup_dir), **mailed_env(scratch)
    )

    assert result.returncode == 4, result.stdout + result.stderr
    report = scratch.report()
    backup_path = report["backup"]
    assert backup_path and backup_path.startswith(str(scratch.backup_dir))
    assert report["exit_status"] == 4
    assert report["status"] == "restore_failed"
    assert report["steps"][-1]["name"] == "roll back"
    assert report["steps"][-1]["status"] == "failed"
    # The damaged backup is refused before anything is restored: the way out is an earlier backup.
    for text in (report["message"], " ".join(result.stderr.split())):
        assert f"Deploy {report['deploy_id']} failed" in text
        assert f"its backup {backup_path} cannot be used" in text
        assert "nothing was restored" in text
        assert "manage.py restore_db OTHER_BACKUP --yes" in text
        assert f"backups are in {scratch.backup_dir}" in text
        assert "Deploy mode stays ON" in text
    after = scratch.inspect()
    assert after["deploy_mode"]  # fail closed: nothing may write to data nobody has verified
    assert after["records"] == {report["deploy_id"]: "restore_failed"}
    assert _subjects(scratch) == [f"[Django] deploy_safe {report['deploy_id']}: restore_failed"]


def test_a_rolled_back_deploy_mails_the_admins(scratch: Scratch):
    result = scratch.deploy(apps="halfway", **mailed_env(scratch))

    assert result.returncode == 1, result.stdout + result.stderr
    report = scratch.report()
    assert _subjects(scratch) == [f"[Django] deploy_safe {report['deploy_id']}: rolled_back"]


def test_a_deploy_that_succeeds_mails_nobody(scratch: Scratch):
    result = scratch.deploy(apps="schema", **mailed_env(scratch))

    assert result.returncode == 0, result.stderr
    assert _subjects(scratch) == []


def test_deploy_passes_when_the_data_equals_the_baseline(scratch: Scratch):
    baseline = scratch.directory / "baseline.jsonl"
    saved = scratch.manage("verify_integrity", "--save-baseline", str(baseline))
    assert saved.returncode == 0, saved.stderr

    result = scratch.deploy("--baseline", str(baseline), apps="schema")

    assert result.returncode == 0, result.stdout + result.stderr
    check = next(s for s in scratch.report()["steps"] if s["name"] == "pre-check: integrity")
    assert check["status"] == "ok"


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A clean git checkout holding this working tree's files (committed or not), to run deploy_safe from."""
    git = shutil.which("git")
    if git is None or not (BASE_DIR / ".git").exists():
        pytest.skip("needs git and this repository's working tree")
    target = tmp_path / "checkout"
    listed = subprocess.run(
        [git, "-C", str(BASE_DIR), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    for name in filter(None, listed.stdout.split("\0")):
        source = BASE_DIR / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "checkout")):
        subprocess.run(
            [git, "-c", "user.name=tests", "-c", "user.email=tests@example.com", *args],
            cwd=target, check=True, capture_output=True,
        )  # fmt: skip
    return target


def _deploy_from(checkout: Path, scratch: Scratch, *args: str) -> subprocess.CompletedProcess[str]:
    command = scratch.deploy_args(*args)
    command.remove("--allow-dirty")
    return subprocess.run(
        [PYTHON, str(checkout / "manage.py"), *command],
        cwd=checkout,
        env=subprocess_env(
            scratch.url,
            DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings",
            DEPLOYGUARD_STATE_CACHE_SECONDS="0",
            **scratch.deploy_env("schema"),
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_an_uncommitted_change_fails_the_clean_tree_pre_check_unless_allowed(scratch: Scratch, checkout):
    (checkout / "stray.py").write_text("# not committed\n")
    (checkout / "README.md").write_text("edited\n")
    before = scratch.inspect()

    dirty = _deploy_from(checkout, scratch)

    assert dirty.returncode == 3, dirty.stdout + dirty.stderr
    assert "The git working tree has 2 uncommitted change(s)" in dirty.stderr
    assert "README.md" in dirty.stderr
    assert "stray.py" in dirty.stderr
    assert "--allow-dirty" in dirty.stderr
    assert scratch.inspect() == before

    allowed = _deploy_from(checkout, scratch, "--allow-dirty")

    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    git_step = next(s for s in scratch.report()["steps"] if s["name"] == "pre-check: clean git working tree")
    assert git_step["status"] == "skipped"


def test_rules_that_cannot_run_before_migrate_run_after_it(scratch: Scratch):
    result = scratch.deploy(apps="newrule")

    assert result.returncode == 0, result.stdout + result.stderr
    steps = {step["name"]: step for step in scratch.report()["steps"]}
    assert steps["pre-check: integrity"]["status"] == "skipped"
    assert steps["pre-check: integrity"]["detail"]["rules"].startswith("could not run on the old schema: ")
    after = steps["post-check: integrity"]["detail"]
    assert after["before"] is None
    assert after["after"]["newrule.E001"] == 0
    assert "reused" not in after


def test_a_baseline_is_still_compared_when_the_rules_cannot_run_before_migrate(scratch: Scratch):
    baseline = scratch.directory / "baseline.jsonl"
    assert scratch.manage("verify_integrity", "--save-baseline", str(baseline)).returncode == 0

    result = scratch.deploy("--baseline", str(baseline), apps="newrule")

    assert result.returncode == 0, result.stdout + result.stderr
    check = next(s for s in scratch.report()["steps"] if s["name"] == "pre-check: integrity")
    assert check["status"] == "ok"
    assert check["detail"]["rules"].startswith("could not run on the old schema: ")
    assert check["detail"]["baseline"] == "equal"


@pytest.mark.parametrize("apps", ["schema", "newrule"])  # newrule: the rules cannot run before migrate
def test_deploy_exits_3_when_the_data_differs_from_the_baseline(scratch: Scratch, apps: str):
    baseline = scratch.directory / "baseline.jsonl"
    assert scratch.manage("verify_integrity", "--save-baseline", str(baseline)).returncode == 0
    changed = scratch.manage(
        "shell", "-c", "from django.db import connection; from tests.utils import behind_the_services\n"
        "with behind_the_services():\n"
        "    connection.cursor().execute(\"UPDATE documents_submission SET title = 'Changed since'\")",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    before = scratch.inspect()

    result = scratch.deploy("--baseline", str(baseline), apps=apps)

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"The data differs from the baseline {baseline}: run verify_integrity --baseline {baseline}." in (
        result.stderr
    )
    assert scratch.inspect() == before  # nothing migrated, deploy mode never on


@pytest.mark.postgresql
def test_a_writer_that_outlasts_the_drain_timeout_stops_the_deploy_before_anything_is_touched(
    scratch: Scratch,
):
    import psycopg

    before = scratch.inspect()
    with psycopg.connect(scratch.url.replace("postgres://", "postgresql://")) as writer:
        writer.execute("UPDATE documents_submission SET title = title WHERE false")  # holds its write lock

        result = scratch.deploy(apps="schema", DEPLOYGUARD_DRAIN_TIMEOUT="0.5")

        writer.rollback()
    assert result.returncode == 3, result.stdout + result.stderr
    # Keeping track of writes, before the backup, waits for that writer as the freeze would.
    assert "A transaction that wrote to a protected table was still open after 0.5s" in result.stderr
    assert "could not start keeping track of writes; nothing was touched." in result.stderr
    after = scratch.inspect()
    assert after == before  # nothing migrated, deploy mode never on, no record
    assert not list(scratch.backup_dir.glob("*.dump"))
    assert scratch.report()["steps"][-1]["name"] == "pre-check: count writes"


SEED_FAKES = (
    "from django.contrib.auth.models import User\n"
    "from tests.documents.fakes import raw_insert_draft, raw_insert_submission\n"
    "pk = raw_insert_submission('ML-900', status='published', approved_by_id=User.objects.first().pk)\n"
    "raw_insert_draft('rfc900', submission_id=pk, published_by_id=User.objects.first().pk)\n"
)


def test_integrity_errors_before_the_deploy_stop_it_with_every_rule_counted(scratch: Scratch):
    """Both models' rules are counted (on a SQLite file, each model's pass on its own thread)."""
    assert scratch.manage("shell", "-c", SEED_FAKES).returncode == 0
    before = scratch.inspect()

    result = scratch.deploy(apps="schema")

    assert result.returncode == 3, result.stdout + result.stderr
    assert scratch.report()["message"] == (
        "1 pre-check(s) failed; nothing was touched: Integrity errors before the deploy: "
        # Written by SQL: no creation records (E020, E021), no match keys (E007, E008).
        "documents.E007 (1), documents.E008 (1), documents.E020 (1), documents.E021 (1); "
        "see `manage.py verify_integrity`."
    )
    assert scratch.inspect() == before
    assert not list(scratch.backup_dir.glob("*"))
