"""Deploy mode across processes: another shell, DEPLOYMENT_MODE, and gunicorn workers on PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from tests.deployguard.support import BASE_DIR, PYTHON, free_port, group_count, manage, subprocess_env
from tests.factories import SuperuserFactory
from tests.waiting import wait_until

CREATE_GROUP = (
    "from django.contrib.auth.models import Group; Group.objects.create(name='from another process')"
)


def test_another_process_cannot_write_until_deploy_mode_is_off(shared_database_url):
    url = shared_database_url
    before = group_count(url)
    assert manage(url, "deploy_mode", "on", "--reason", "Release 42").returncode == 0

    refused = manage(url, "shell", "-c", CREATE_GROUP)
    assert refused.returncode != 0
    assert "DeployModeActive" in refused.stderr
    assert "manage.py deploy_mode off" in refused.stderr
    assert group_count(url) == before

    assert manage(url, "deploy_mode", "off").returncode == 0
    assert manage(url, "shell", "-c", CREATE_GROUP).returncode == 0
    assert group_count(url) == before + 1


def test_deploymentmode_true_blocks_writes_in_that_process_only(shared_database_url):
    url = shared_database_url
    refused = manage(url, "shell", "-c", CREATE_GROUP, DEPLOYMENT_MODE="true")
    assert refused.returncode != 0
    assert "DEPLOYMENT_MODE=true" in refused.stderr
    assert manage(url, "shell", "-c", CREATE_GROUP).returncode == 0
    assert group_count(url) == 1


def test_an_unparsable_deploymentmode_stops_start_up(shared_database_url):
    result = manage(shared_database_url, "check", DEPLOYMENT_MODE="perhaps")
    assert result.returncode != 0
    assert "DEPLOYMENT_MODE='perhaps' is neither true nor false" in result.stderr


# --- several processes on PostgreSQL -----------------------------------------------------

ORM_WRITER = """
import os, time
from django.contrib.auth.models import Group
from deployguard import DeployModeActive
stop, deadline, i = os.environ["WRITER_STOP_FILE"], time.monotonic() + 600, 0  # the stop file ends it
while not os.path.exists(stop) and time.monotonic() < deadline:
    i += 1
    started = time.time()
    try:
        Group.objects.create(name=f"orm-{i}")
        print(f"ok {started:.6f}", flush=True)
    except DeployModeActive:
        print(f"refused {started:.6f}", flush=True)
    time.sleep(0.02)
"""
PASSWORD = "correct horse battery staple"


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:  # not serving yet
        return 0


def results(log: Path) -> list[tuple[str, float]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(m[1], float(m[2])) for line in lines if (m := re.match(r"^(\S+) ([\d.]+)$", line))]


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.postgresql
def test_no_write_lands_from_gunicorn_workers_or_an_orm_worker_after_deploy_mode_on_returns(
    shared_database_url, tmp_path
):
    url = shared_database_url
    deployer = SuperuserFactory(username="deployer")
    deployer.set_password(PASSWORD)  # hashed with the hasher the subprocesses use too
    deployer.save(update_fields=["password"])
    stop_file = tmp_path / "stop"
    env = subprocess_env(url, DEPLOYGUARD_STATE_CACHE_SECONDS="1", WRITER_STOP_FILE=str(stop_file))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {name: tmp_path / f"{name}.log" for name in ("gunicorn", "orm", "http")}
    commands = {
        "gunicorn": [str(Path(PYTHON).with_name("gunicorn")), "project.wsgi:application", "--workers", "2",
                     "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"],
        "orm": [PYTHON, "manage.py", "shell", "-c", ORM_WRITER],
        "http": [PYTHON, str(Path(__file__).with_name("http_writer.py")), base, "deployer", PASSWORD,
                 str(stop_file)],
    }  # fmt: skip
    processes: list[subprocess.Popen] = []

    def start(name: str) -> None:
        with logs[name].open("w") as log:
            processes.append(
                subprocess.Popen(
                    commands[name], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip

    def tried_since(name: str, since: float) -> int:
        return sum(started > since for _outcome, started in results(logs[name]))

    def seen() -> str:
        return "; ".join(
            f"{name} writer: {len(found)} attempts, last {[f'{o} {t:.1f}' for o, t in found[-3:]]}"
            for name in ("orm", "http")
            for found in [results(logs[name])]
        )

    def wrote_since(since: float) -> bool:
        return all(
            len([t for outcome, t in results(logs[name]) if outcome == "ok" and t > since]) >= 3
            for name in ("orm", "http")
        )

    try:
        start("gunicorn")
        wait_until(lambda: http_status(f"{base}/_deploy/health") == 200, "gunicorn to serve")
        start("orm")
        start("http")
        wait_until(lambda: wrote_since(0), "both writers to write", describe=seen)

        switched = manage(
            url, "deploy_mode", "on", "--reason", "Release 42", DEPLOYGUARD_STATE_CACHE_SECONDS="1"
        )
        on_returned = time.time()
        assert switched.returncode == 0, switched.stderr
        count_at_on = Group.objects.count()
        # The writers keep trying: each at least a few times after `on` returned, however slow the machine.
        wait_until(
            lambda: all(tried_since(name, on_returned) >= 5 for name in ("orm", "http")),
            "both writers to try again while deploy mode is on",
            describe=seen,
        )
        assert Group.objects.count() == count_at_on
        for name in ("orm", "http"):
            late = {outcome for outcome, started in results(logs[name]) if started > on_returned}
            assert late == {"refused"}, f"{name} writer after `on` returned: {late}"
        assert http_status(f"{base}/_deploy/status") == 200  # reads keep working

        off_requested = time.time()
        assert manage(url, "deploy_mode", "off", DEPLOYGUARD_STATE_CACHE_SECONDS="1").returncode == 0
        wait_until(
            lambda: wrote_since(off_requested), "both writers to write again after `off`", describe=seen
        )
        assert Group.objects.count() > count_at_on
    finally:
        stop_file.touch()
        for process in reversed(processes):
            stop_process(process)
