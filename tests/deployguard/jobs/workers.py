"""Real worker processes for the job tests: db_worker and a Celery worker (--pool=solo) on Redis.

Each runs in a process group of its own, so that it and any child it starts are killed by one
signal; the fixtures kill whatever is left when the test ends, passed or failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from tests.deploy_apps.support import BASE_DIR, PYTHON, Scratch, run_manage
from tests.deployguard.support import subprocess_env
from tests.waiting import wait_until

REDIS_HOST = os.environ.get("DEPLOYSAFE_TEST_REDIS", "redis://127.0.0.1:6379")
# Redis database numbers of this project's tests. Each test process (a pytest-xdist worker) claims
# one for its lifetime by holding a lock file, so two test sessions on the machine (two engines'
# suites at once, two checkouts) never share a queue or flush each other's.
REDIS_NUMBERS = range(6, 14)
_claimed: list[tuple[int, IO[str]]] = []
QUIET = {"DEPLOYGUARD_INTEGRITY_WATCH_MINUTES": "0"}


def redis_url() -> str:
    return f"{REDIS_HOST}/{_redis_number()}"


def _redis_number() -> int:
    """This process's Redis database number: the first of REDIS_NUMBERS no other process holds."""
    if not _claimed:
        for number in REDIS_NUMBERS:
            handle = open(Path(tempfile.gettempdir()) / f"deploysafe-tests-redis-{number}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when this process ends
            except BlockingIOError:
                handle.close()
                continue
            _claimed.append((number, handle))
            break
        else:
            pytest.fail(
                f"Every Redis database number {REDIS_NUMBERS.start}-{REDIS_NUMBERS.stop - 1} "
                "is held by another test process."
            )
    return _claimed[0][0]


def redis_available() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(redis_url(), socket_connect_timeout=3)
        client.flushdb()  # this project's own database number: nothing of anyone else's
        return True
    except redis.RedisError:
        return False


@dataclass
class Worker:
    """A worker process and its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not end."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Workers:
    """Starts workers against a scratch database; stop_all() is the fixture's finalizer."""

    scratch: Scratch
    started: list[Worker] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(self.scratch.url, **{"DEPLOYGUARD_STATE_CACHE_SECONDS": "0", **QUIET, **extra})

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> Worker:
        log = self.scratch.directory / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(process, log)
        self.started.append(worker)
        return worker

    def db_worker(self, *args: str, **env: str) -> Worker:
        command = [PYTHON, str(BASE_DIR / "manage.py"), "db_worker", "--no-reload", "--no-startup-delay",
                   "--interval", "0.1", *args]  # fmt: skip
        worker = self._start("db_worker", command, self.env(**env))
        wait_until(
            lambda: "Starting deploy-aware worker" in worker.output() or not worker.alive(), "db_worker"
        )
        assert worker.alive(), worker.output()
        return worker

    def celery(self, **env: str) -> Worker:
        command = [str(Path(PYTHON).with_name("celery")), "-A", "project", "worker", "--pool=solo",
                   "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "info"]  # fmt: skip
        worker = self._start("celery", command, self.env(CELERY_BROKER_URL=redis_url(), **env))
        wait_until(lambda: " ready." in worker.output() or not worker.alive(), "the Celery worker")
        assert worker.alive(), worker.output()
        return worker

    def manage(self, *args: str, **env: str) -> Worker:
        """Any manage.py command in the background, as a process of the site."""
        return self._start(args[0], [PYTHON, str(BASE_DIR / "manage.py"), *args], self.env(**env))

    def stop_all(self) -> None:
        for worker in self.started:
            worker.kill()


@pytest.fixture
def workers(scratch: Scratch) -> Iterator[Workers]:
    started = Workers(scratch)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def celery_broker() -> str:
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {redis_url()} is unreachable and CI=true")
        pytest.skip(f"Redis at {redis_url()} is unreachable: start it with redis-server")
    return redis_url()


# --- looking at a scratch database from the test process -----------------------------------


def query(scratch: Scratch, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the scratch database, read with the bare driver (no Django start-up)."""
    if scratch.url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(scratch.url.removeprefix("sqlite:///"), timeout=30)) as db:
            rows = db.execute(sql.replace("%s", "?"), params).fetchall()
            db.commit()
            return rows
    with psycopg.connect(scratch.url.replace("postgres://", "postgresql://", 1), autocommit=True) as db:
        return db.execute(sql, params).fetchall()  # type: ignore[arg-type]


def jobs(scratch: Scratch) -> list[tuple[str, str, Any]]:
    """(task name, status, return value) of every database job the tests queued, in the order they were
    queued (the scratch database's own publication notice left out)."""
    rows = query(
        scratch,
        "SELECT task_path, status, return_value FROM django_tasks_database_dbtaskresult "
        "WHERE task_path LIKE 'tests.%%' ORDER BY enqueued_at",
    )
    sqlite = scratch.url.startswith("sqlite:")  # JSON comes back as text; psycopg decodes it
    return [
        (path.rsplit(".", 1)[1], status, json.loads(value) if sqlite and value is not None else value)
        for path, status, value in rows
    ]


def groups(scratch: Scratch) -> list[str]:
    return [name for (name,) in query(scratch, "SELECT name FROM auth_group ORDER BY id")]


def deploy_mode(scratch: Scratch, switch: str, **env: str) -> subprocess.CompletedProcess[str]:
    args = ["deploy_mode", switch] + (["--reason", "job tests"] if switch == "on" else [])
    result = run_manage(scratch.url, *args, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


ENQUEUE = """
import json
from django.utils.module_loading import import_string
for path, backend, args in json.loads({payload!r}):
    task = import_string(path)
    print("ENQUEUED", task.using(backend=backend).enqueue(*args).id, flush=True)
"""


def enqueue(
    scratch: Scratch, *calls: tuple[str, list[Any]], backend: str = "default", **env: str
) -> list[str]:
    """Queue jobs ("module.task", [args]) through the Django tasks API, in a process of the site."""
    payload = json.dumps([(f"tests.deployguard.jobs.tasks.{name}", backend, args) for name, args in calls])
    result = run_manage(scratch.url, "shell", "-c", ENQUEUE.format(payload=payload), **{**QUIET, **env})
    assert result.returncode == 0, result.stderr
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ENQUEUED ")]
