"""The incident end to end: a release whose migration, receiver, start-up hook and job try to
publish while clients keep POSTing to the admin; deploy_safe must leave the one legitimate
document, refuse or roll back every attempt, name each source and alert the admins."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.deploy_apps import support as deploy_support
from tests.deploy_apps.support import BASE_DIR, PYTHON, Scratch, mailed_env
from tests.deployguard.support import free_port, subprocess_env
from tests.reliability.rows import compare, scratch_row_hashes
from tests.reliability.support_deploy import (
    finish,
    gate_file,
    mails,
    reach,
    release,
    start_deploy,
    state_of,
    subjects,
)
from tests.waiting import wait_until

LEGITIMATE = (["ML-001"], ["rfc1"])
INCIDENT = BASE_DIR / "tests" / "deploy_apps" / "incident"
scratch, scratch_template = deploy_support.scratch, deploy_support.scratch_template  # fixtures
SEEDED = re.compile(r"incident: the (.+) could not seed (\S+)")


WRITES = re.compile(r"\.objects\.create\(|\bpublish_behind_the_services\(")  # ORM create, raw-SQL helper


def source_line(path: Path, function: str) -> str:
    """`file:line in function()` of the first write in `function`, as the report names it: an ORM
    create (the data migration) or the call into the raw-SQL helper (the receiver, the ready() hook,
    whose outermost project frame is that call)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s*def {re.escape(function)}\(", line))
    number = next(i for i in range(start, len(lines)) if WRITES.search(lines[i])) + 1
    return f"{path.relative_to(BASE_DIR)}:{number} in {function}()"


SOURCES = {
    "data migration": source_line(INCIDENT / "migrations" / "0002_seed_submissions.py", "seed"),
    "post_migrate receiver": source_line(INCIDENT / "apps.py", "publish_after_migrate"),
    "ready() hook": source_line(INCIDENT / "apps.py", "ready"),
}


def refusals_named(report: dict) -> dict[str, int]:
    """How many refused writes the report pins on each source."""
    return {
        source: sum(
            1
            for writer in report["blocked_writes"]
            if writer["exception"] == "DeployModeActive" and writer["where"].startswith(where)
        )
        for source, where in SOURCES.items()
    }


def documents_and_deploy_mode(state: dict) -> tuple[list[str], list[str], bool]:
    return state["submissions"], state["drafts"], state["deploy_mode"]


def test_a_release_whose_code_swallows_its_refused_writes_is_still_rolled_back_named_and_alerted(
    scratch: Scratch, record_scenario
):
    """A release whose code catches its refused writes still fails the deploy: rolled back, named, alerted.

    Its data migration, post_migrate receiver and ready() hook each catch and log the refusal,
    as the incident's code did: migrate exits 0, yet the report names each by file:line.
    """
    before = scratch_row_hashes(scratch)

    result = scratch.deploy(apps="incident", **mailed_env(scratch))

    assert result.returncode == 1, result.stdout + result.stderr
    report = scratch.report()
    assert report["status"] == "rolled_back"
    assert refusals_named(report) == {"data migration": 2, "post_migrate receiver": 1, "ready() hook": 1}
    for where in SOURCES.values():
        assert where in result.stderr  # the one-line message names each place too
    assert subjects(scratch) == [f"[Django] deploy_safe {report['deploy_id']}: rolled_back"]
    after_state, after = state_of(scratch)
    assert documents_and_deploy_mode(after_state) == (*LEGITIMATE, False)
    # deploy_safe's own process runs the ready() hook too, frozen from start-up: refused there.
    own = len(SEEDED.findall(result.stderr))
    refused = len(report["blocked_writes"]) + own
    record_scenario(
        "incident sources that swallow their refusals",
        attempts=refused,
        writes_refused=refused,
        changes=compare(before, after),
        exit_status=result.returncode,
        sources=sorted(SOURCES.values()),
    )


# --- the whole incident, with a background job and 8 admin clients -------------------------

CLIENTS = 8
PASSWORD = "correct horse battery staple"
CREATE_ADMIN = f"""
from django.contrib.auth import get_user_model
get_user_model().objects.create_superuser("incident-admin", "admin@example.com", {PASSWORD!r})
"""
JOB = "from tests.deploy_apps.incident.job import run; run({stop!r})"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class AdminClient:
    """A browser-like client: logged in to the admin, POSTs the add-submission form with its CSRF token."""

    def __init__(self, base: str, number: int) -> None:
        self.base, self.number = base, number
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())
        self.statuses: list[int] = []

    def request(self, path: str, data: dict[str, str] | None = None) -> int:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, body, timeout=30) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            error.read()
            return error.code

    def csrf(self) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")

    def log_in(self) -> None:
        assert self.request("/admin/login/") == 200
        form = {"username": "incident-admin", "password": PASSWORD, "csrfmiddlewaretoken": self.csrf()}
        assert self.request("/admin/login/?next=/admin/", form) == 302

    def post_until(self, stop: threading.Event) -> None:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            form = {
                "ml_number": f"ML-{800 + self.number}{attempt:03d}",
                "title": "Posted during the deploy",
                "submitted_by": f"client {self.number}",
                "csrfmiddlewaretoken": self.csrf(),
                "_save": "Save",
            }
            try:
                self.statuses.append(self.request("/admin/documents/submission/add/", form))
            except OSError:  # no answer at all: counted, and fails the test's "all 503"
                self.statuses.append(0)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def serving(url: str) -> bool:
    try:
        return bool(get_json(url))
    except (OSError, ValueError):
        return False


def test_the_incident_end_to_end_leaves_only_the_legitimate_document(scratch: Scratch, record_scenario):
    """The incident replayed ends with the 1 legitimate document: every attempt refused or rolled back.

    A data migration, a post_migrate receiver, a ready() hook and a background job try to
    create 5 submissions and 3 drafts while 8 logged-in admin clients POST the add form, all
    while deploy mode is on; the report names each source and the admins are mailed.
    """
    assert scratch.manage("shell", "-c", CREATE_ADMIN).returncode == 0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The release still serving while the deploy runs: the old code, on the same database.
    server_env = subprocess_env(scratch.url, DEPLOYGUARD_STATE_CACHE_SECONDS="0")
    server = subprocess.Popen(
        [str(Path(PYTHON).with_name("gunicorn")), "project.wsgi:application", "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"],
        cwd=BASE_DIR, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    stop_clients, job, deploy = threading.Event(), None, None
    threads: list[threading.Thread] = []
    stop_file = scratch.directory / "job.stop"
    try:
        wait_until(lambda: serving(f"{base}/_deploy/status"), "gunicorn to serve")
        clients = [AdminClient(base, number) for number in range(CLIENTS)]
        for client in clients:
            client.log_in()  # before the snapshot: logging in stamps auth_user.last_login
        before = scratch_row_hashes(scratch)

        # Paused where the deploy is frozen on both sides: after deploy mode on, the
        # fingerprint and the backup; before whatever follows migrate.
        after_migrate = ("post-check: health", "roll back")
        deploy = start_deploy(
            scratch, apps="gate,incident", pause_at=("migrate", *after_migrate), **mailed_env(scratch)
        )
        deploy_id = reach(deploy, scratch, "migrate")
        status = get_json(f"{base}/_deploy/status")
        assert status["enabled"] and status["deploy_id"] == deploy_id, status

        job_log = scratch.directory / "job.log"
        with job_log.open("w") as out:
            job = subprocess.Popen(
                [PYTHON, "manage.py", "shell", "-c", JOB.format(stop=str(stop_file))],
                cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env=subprocess_env(
                    scratch.url, DJANGO_SETTINGS_MODULE="tests.deploy_apps.settings",
                    DEPLOYGUARD_STATE_CACHE_SECONDS="0", DEPLOY_TEST_APPS="incident",
                ),
            )  # fmt: skip
        threads = [threading.Thread(target=client.post_until, args=(stop_clients,)) for client in clients]
        for thread in threads:
            thread.start()

        def job_attempts() -> list[str]:
            return [line for line in job_log.read_text().splitlines() if line in ("ok", "refused")]

        wait_until(
            lambda: all(len(c.statuses) >= 2 for c in clients) and len(job_attempts()) >= 2,
            "every client and the job to try twice while deploy mode is on",
        )
        release(scratch, "migrate")  # they keep trying while migrate runs

        wait_until(
            lambda: (
                any(gate_file(scratch, step, "reached").exists() for step in after_migrate)
                or deploy.poll() is not None
            ),
            "migrate to end",
        )
        stop_clients.set()
        for thread in threads:
            thread.join(timeout=60)
        stop_file.touch()
        assert job.wait(timeout=60) == 0
        for step in after_migrate:
            release(scratch, step)
        result = finish(deploy)
    finally:
        stop_clients.set()
        stop_file.touch()
        for step in ("migrate", "post-check: health", "roll back"):
            release(scratch, step)
        for process in (job, deploy, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM) if process is not deploy else process.kill()
                process.wait(timeout=30)

    assert result.returncode == 1, result.stdout + result.stderr
    report = scratch.report()
    assert report["status"] == "rolled_back" and report["deploy_id"] == deploy_id
    assert [s["name"] for s in report["steps"]][-3:] == ["migrate", "roll back", "deploy mode off"]
    assert refusals_named(report) == {"data migration": 2, "post_migrate receiver": 1, "ready() hook": 1}
    assert subjects(scratch) == [f"[Django] deploy_safe {deploy_id}: rolled_back"]
    assert all(where in mails(scratch)[0] for where in SOURCES.values())
    after_state, after = state_of(scratch)
    assert documents_and_deploy_mode(after_state) == (*LEGITIMATE, False)

    statuses = [status for client in clients for status in client.statuses]
    assert set(statuses) == {503}, statuses  # every admin POST refused, none failed otherwise
    job_lines = job_log.read_text()
    loop = [line for line in job_lines.splitlines() if line in ("ok", "refused") or line.startswith("error")]
    assert set(loop) == {"refused"}, loop
    hooks = SEEDED.findall(result.stderr) + SEEDED.findall(job_lines)  # ready() in deploy_safe and the job
    assert hooks == [("ready() hook", "ML-960/rfc960")] * 2, hooks
    in_migrate = len(report["blocked_writes"])
    attempts = len(statuses) + len(loop) + len(hooks) + in_migrate
    # Nothing is ignored: the tables the deploy itself writes (the deploy-mode switch and its
    # history, DeployRecord and its history) are deployguard's own, outside protected_tables(),
    # so row hashes never include them; django_session is on DEPLOYGUARD_WRITABLE_TABLES.
    record_scenario(
        "the incident: migration, receiver, ready() hook, job and 8 admin clients during deploy_safe",
        attempts=attempts,
        writes_refused=statuses.count(503) + loop.count("refused") + len(hooks) + in_migrate,
        changes=compare(before, after),
        exit_status=result.returncode,
        admin_posts=len(statuses),
        job_attempts=len(loop),
        start_up_hook_attempts=len(hooks),
        refused_in_migrate=in_migrate,
        sources=sorted(SOURCES.values()),
        alerted=subjects(scratch),
    )
