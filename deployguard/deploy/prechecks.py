"""The pre-checks: nothing is touched unless every one passes (exit 3 otherwise).

One function per check, each returning a Verdict; run() takes them in order, each as a step.
The write-path audit reads only files: it runs on a thread while the checks before it wait on
the database (the integrity rules above all).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from deployguard import state
from deployguard.deploy import record, rules
from deployguard.deploy.migrate import pending_migrations
from deployguard.deploy.rules import RulesBefore
from deployguard.deploy.steps import FAILED, SKIPPED, Alongside, Steps
from deployguard.models import STATE_ROW_ID, DeployModeState
from deployguard.write_paths import AuditReport, audit, config_from_settings

INCOMPLETE_DEPLOY = (
    "Deploy {deploy_id} (started {started} by {who}) never finished: the process was killed. "
    "Run `manage.py deploy_safe --recover` first. Nothing was touched."
)
GIT_CHANGES_NAMED = 10  # files named in the clean-tree pre-check's message


@dataclass
class Verdict:
    """A check's outcome: the problem that fails it ("" when it passes), whether it did not
    apply, and what its step reports."""

    problem: str = ""
    skipped: bool = False
    detail: Any = None


@dataclass
class IntegrityVerdict(Verdict):
    rules: RulesBefore = field(default_factory=lambda: RulesBefore(None))
    baseline_after_migrate: bool = False  # the old schema does not fit the models: compare after migrate


@dataclass
class PreChecked:
    failures: list[str]
    rules: RulesBefore
    baseline_after_migrate: bool


V = TypeVar("V", bound=Verdict)


def run(
    steps: Steps,
    alongside: Alongside,
    *,
    using: str,
    backup_dir: Path,
    allow_dirty: bool,
    check_level: str,
    allow_data_migrations: list[str],
    baseline: str | None,
) -> PreChecked:
    """Every pre-check after the lock, in order, each a step; the failures, and what the
    integrity check learnt for the rest of the deploy."""
    audited = alongside.start(lambda: audit(config_from_settings()))
    failures: list[str] = []

    def check(name: str, verdict_of: Callable[[], V]) -> V:
        with steps.step(f"pre-check: {name}") as step:
            verdict = verdict_of()
            step.detail = verdict.detail
            if verdict.skipped:
                step.status = SKIPPED
            if verdict.problem:
                step.status, step.detail = FAILED, verdict.problem
                failures.append(verdict.problem)
                steps.say("ERROR", f"  {verdict.problem}")
        return verdict

    check("no incomplete deploy", lambda: no_incomplete_deploy(using=using))
    check("deploy mode off", lambda: deploy_mode_off(using=using))
    check("backup directory writable", lambda: backup_directory_writable(backup_dir))
    check("clean git working tree", lambda: clean_git_tree(Path(settings.BASE_DIR), allow_dirty=allow_dirty))
    check("check --deploy", lambda: system_checks(check_level))
    check("makemigrations --check", migrations_made)
    check("data migrations named", lambda: data_migrations_named(allow_data_migrations, using=using))
    integrity = check("integrity", lambda: integrity_before(baseline, using=using, alongside=alongside))
    check("write-path audit", lambda: write_paths_clean(audited))
    return PreChecked(failures, integrity.rules, integrity.baseline_after_migrate)


def no_incomplete_deploy(*, using: str) -> Verdict:
    if not record.table_exists(using=using):
        return Verdict(skipped=True)
    running = record.running_record(using=using)
    if running:
        return Verdict(
            INCOMPLETE_DEPLOY.format(
                deploy_id=running.deploy_id, started=running.started_at.isoformat(timespec="seconds"),
                who=running.started_by,
            )
        )  # fmt: skip
    return Verdict()


def deploy_mode_off(*, using: str) -> Verdict:
    connection = connections[using]
    with connection.cursor() as cursor:
        if DeployModeState._meta.db_table not in connection.introspection.table_names(cursor):
            return Verdict()
    row = DeployModeState.objects.using(using).filter(pk=STATE_ROW_ID).first()
    if row and row.enabled:
        return Verdict(
            f"Deploy mode is already on ({state.status_from_row(row).describe()}); turn it off first."
        )
    return Verdict()


def backup_directory_writable(directory: Path) -> Verdict:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".deploy_safe-probe-"):
            pass
    except OSError as error:
        why = error.strerror or error
        return Verdict(f"The backup directory {directory} is not writable ({why}); pass --backup-dir.")
    return Verdict(detail=str(directory))


def clean_git_tree(base: Path, *, allow_dirty: bool) -> Verdict:
    """No uncommitted change in the git working tree at `base` (skipped outside one, or without git)."""
    git = shutil.which("git")
    if allow_dirty or git is None:
        return Verdict(skipped=True)
    inside = subprocess.run(  # noqa: S603
        [git, "-C", str(base), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode != 0:
        return Verdict(skipped=True)
    status = subprocess.run(  # noqa: S603
        [git, "-C", str(base), "status", "--porcelain"], capture_output=True, text=True, check=False
    )
    if status.stdout.strip():
        changed = [line[3:] for line in status.stdout.splitlines() if line.strip()]
        named = ", ".join(changed[:GIT_CHANGES_NAMED])
        more = ", …" if len(changed) > GIT_CHANGES_NAMED else ""
        return Verdict(
            f"The git working tree has {len(changed)} uncommitted change(s) ({named}{more}): "
            "commit them or pass --allow-dirty."
        )
    return Verdict()


def system_checks(level: str) -> Verdict:
    buffer = StringIO()
    try:
        call_command("check", deploy=True, fail_level=level, stdout=buffer, stderr=buffer)
    except CommandError as error:
        return Verdict(
            f"`check --deploy` found issues at {level} or above: {str(error).strip().splitlines()[-1]}"
        )
    return Verdict()


def migrations_made() -> Verdict:
    buffer = StringIO()
    try:
        call_command("makemigrations", check=True, dry_run=True, stdout=buffer, stderr=buffer)
    except SystemExit as exit_:
        if exit_.code:
            return Verdict(
                "Models have changes without migrations: run makemigrations and commit "
                f"({buffer.getvalue().strip()[:200]})."
            )
    return Verdict()


def data_migrations_named(names: list[str], *, using: str) -> Verdict:
    """Every --allow-data-migration names a pending migration."""
    if not names:
        return Verdict(skipped=True)
    pending = set(pending_migrations(using=using))
    unknown = [name for name in names if name not in pending]
    if unknown:
        return Verdict(f"--allow-data-migration names no pending migration: {', '.join(unknown)}.")
    return Verdict()


def integrity_before(baseline: str | None, *, using: str, alongside: Alongside) -> IntegrityVerdict:
    """No integrity errors (or the data equals --baseline). When the new code's models do not
    fit the old schema yet, the rules run after migrate only (any error then fails the deploy),
    and the baseline is compared after migrate, on the same rows (the fingerprints prove it)."""
    found = rules.count_before(using=using, alongside=alongside)
    verdict = IntegrityVerdict(rules=found)
    if found.counts is None:
        verdict.detail = {"rules": f"could not run on the old schema: {found.failure}"}
    else:
        verdict.detail = found.counts
    if baseline:
        try:
            verdict.problem = rules.baseline_problem(baseline, using=using)
        except DatabaseError as error:
            verdict.baseline_after_migrate = True
            if not isinstance(verdict.detail, dict) or "rules" not in verdict.detail:
                verdict.detail = {"rules": verdict.detail}
            verdict.detail["baseline"] = (
                f"compared after migrate: the old schema does not fit the models ({error})"
            )
            return verdict
        if isinstance(verdict.detail, dict) and "rules" in verdict.detail:
            verdict.detail["baseline"] = "equal"
        return verdict
    if found.counts is None:
        verdict.skipped = True
        return verdict
    if errors := rules.errors(found.counts):
        listed = ", ".join(f"{rule_id} ({count})" for rule_id, count in errors.items())
        verdict.problem = f"Integrity errors before the deploy: {listed}; see `manage.py verify_integrity`."
    return verdict


def write_paths_clean(audited: Future[tuple[AuditReport, float]]) -> Verdict:
    report, seconds = audited.result()
    verdict = Verdict(detail={"seconds": seconds, "alongside": "the pre-checks before it"})
    if report.violations or report.errors:
        verdict.problem = (
            f"The write-path audit found {len(report.violations)} violation(s) and "
            f"{len(report.errors)} unscannable file(s): run `manage.py audit_write_paths`."
        )
    return verdict
