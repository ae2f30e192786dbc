"""Load: gunicorn workers serving readers and writers while deploy mode is switched on and off.

Both databases: on PostgreSQL the servers share the test database; on SQLite, a database
file of the test's own (the in-memory test database cannot be shared), read directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from deployguard import state
from deployguard.middleware import REFUSED_REQUEST
from deployguard.state import DeployModeStatus
from documents.models import Submission
from tests.deployguard.conftest import migrated_sqlite_file, shared_database_url  # noqa: F401 (fixtures)
from tests.deployguard.support import BASE_DIR, PYTHON, free_port, manage, subprocess_env
from tests.reliability.rows import RowHashes, compare, row_hashes
from tests.reliability.support_load import (
    LANDED,
    ORM_WRITER,
    AdminBrowser,
    Attempt,
    Switch,
    Timeline,
    orm_attempts,
    orm_writer_stopped,
    percentile_ms,
    rows_between,
    run_every_route_writer,
    run_reader,
    run_writer,
    sqlite_file_row_hashes,
    switch_over_http,
    tally,
    total,
    unexpected,
    writers_seen,
)
from tests.waiting import wait_until

WORKERS = 3
READERS = 6
WRITERS = 3
CYCLES = 3
# Bounds against a hang, not budgets: every client keeps going until the test stops it, so a slow
# machine that holds deploy mode on longer cannot exhaust a writer before the test has seen it write
# again. No client sends more than this many requests, and nothing runs past RUN_SECONDS.
READS_PER_READER = 2_000
WRITES_PER_WRITER = 3_000
ORM_MAX_ATTEMPTS = 6_000
RUN_SECONDS = 600
# How long a wait for the clients may take before the test gives up and says what it saw.
WAIT_SECONDS = 180
REQUEST_JOIN_SECONDS = 30  # a request times out after 20 s
TOKEN = "load-test-token-" + "t" * 32  # a server on 127.0.0.1, for this test only
PASSWORD = "correct horse battery staple"  # tests.factories' password
CACHE_SECONDS = "1"
# Deploy mode stays on until each kind of writer has been refused this often in the window.
REFUSALS_PER_WINDOW = 5
FROZEN_CACHE_LIFETIMES = 6
# The admin write routes run_every_route_writer tries (the edit route's path names a submission).
EVERY_ROUTE = ("/admin/documents/submission/add/", "/admin/documents/submission/", "/admin/auth/group/add/")

SEED = """
from tests.factories import EditorFactory, SubmissionFactory
editor = EditorFactory(username="loader")
print("SEEDED", *[SubmissionFactory(actor=editor).pk for _ in range(3)])
"""
HISTORY = "SELECT history_date, enabled FROM deployguard_historicaldeploymodestate ORDER BY history_id"


@dataclass
class Database:
    """What the test reads of the database the servers share: rows and plain queries."""

    rows: Callable[[], RowHashes]
    query: Callable[[str], list[tuple[Any, ...]]]


def shared_database(url: str) -> Database:
    """PostgreSQL: the test's own connection (the test database is shared); SQLite: the file."""
    if connection.vendor == "postgresql":

        def rows() -> RowHashes:
            # One snapshot for every table, so the row set is that of one instant.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return row_hashes()

        def query(sql: str) -> list[tuple[Any, ...]]:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()

        return Database(rows, query)

    import sqlite3

    path = Path(url.removeprefix("sqlite:///"))

    def sqlite_query(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path, timeout=30) as raw:
            return raw.execute(sql).fetchall()

    return Database(lambda: sqlite_file_row_hashes(path), sqlite_query)


def as_timestamp(value: Any) -> float:
    if isinstance(value, str):  # SQLite stores UTC as text
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.timestamp()


class Servers:
    """gunicorn and the ORM writer, each in its own session so the whole group can be stopped."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stop_file = tmp_path / "stop"
        self.tmp_path = tmp_path
        self.env = subprocess_env(
            url,
            DEPLOYGUARD_STATE_CACHE_SECONDS=CACHE_SECONDS,
            DEPLOYGUARD_TOKEN=TOKEN,
            WRITER_STOP_FILE=str(self.stop_file),
            WRITER_SECONDS=str(RUN_SECONDS),
            WRITER_MAX_ATTEMPTS=str(ORM_MAX_ATTEMPTS),
        )
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str]) -> Path:
        log = self.tmp_path / f"{name}.log"
        with log.open("w") as output:
            self.processes.append(
                subprocess.Popen(
                    command, cwd=BASE_DIR, env=self.env, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
        return log

    def stop(self) -> None:
        self.stop_file.touch()
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def gunicorn_command(port: int) -> list[str]:
    return [
        str(Path(PYTHON).with_name("gunicorn")), "project.wsgi:application", "--workers", str(WORKERS),
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--timeout", "60",
    ]  # fmt: skip


def switch(url: str, servers: Servers, timeline: Timeline, mode: str, cycle: int) -> None:
    """Turn deploy mode on or off: by the command in odd cycles, by the endpoint in even ones."""
    over_http = cycle % 2 == 0
    entry = Switch(mode, "POST /_deploy/mode" if over_http else "manage.py deploy_mode", time.time())
    timeline.switches.append(entry)
    if over_http:
        status, body = switch_over_http(servers.base, TOKEN, mode)
        entry.returned = time.time()
        entry.result = str(status)
        assert status == 200, f"POST /_deploy/mode {mode}: {status} {body}"
    else:
        args = ("on", "--reason", "Load test release") if mode == "on" else ("off",)
        result = manage(url, "deploy_mode", *args, DEPLOYGUARD_STATE_CACHE_SECONDS=CACHE_SECONDS)
        entry.returned = time.time()
        entry.result = str(result.returncode)
        assert result.returncode == 0, f"deploy_mode {mode}: {result.stderr}"


def refused_since(attempts: list[Attempt], since: float, client: str) -> int:
    return sum(a.sent >= since and a.client == client and a.status in (503, "refused") for a in attempts)


def landed_since(attempts: list[Attempt], since: float, client: str) -> int:
    return sum(a.sent >= since and a.client == client and a.status in LANDED for a in attempts)


def test_load_switching_deploy_mode_under_readers_and_writers(
    shared_database_url,  # noqa: F811 (the fixture imported above)
    tmp_path,
    record_scenario,
):
    """Under load, switching deploy mode: no write lands while on, refused writes get 503, every read 200.

    3 gunicorn workers on 127.0.0.1; 6 threads reading the admin and /_deploy/health, 3 posting
    the admin's add form, 1 ORM writer process; deploy mode on and off 3 times, by
    `manage.py deploy_mode` and by POST /_deploy/mode. Bounded in requests and time.
    """
    url = shared_database_url
    database = shared_database(url)
    seeded = manage(url, "shell", "-c", SEED, check=True).stdout
    submission_ids = next(line for line in seeded.splitlines() if line.startswith("SEEDED")).split()[1:]
    read_paths = [
        "/admin/documents/submission/",
        f"/admin/documents/submission/{submission_ids[0]}/change/",
        "/_deploy/health",
        f"/admin/documents/submission/{submission_ids[1]}/change/",
    ]
    servers = Servers(url, tmp_path)
    timeline = Timeline()
    stop = threading.Event()
    reads: list[Attempt] = []  # list.append is atomic: the threads share these lists
    writes: list[Attempt] = []
    threads: list[threading.Thread] = []
    on_rows: list[tuple[RowHashes, RowHashes]] = []  # the rows when `on` returned, and before `off`
    orm_log = tmp_path / "orm.log"

    def every_write() -> list[Attempt]:
        return writes + orm_attempts(orm_log)

    def seen(since: float) -> str:
        stopped = orm_writer_stopped(orm_log)
        return writers_seen(every_write(), since) + (
            f"; the ORM writer stopped ({stopped})" if stopped else ""
        )

    started = time.time()
    try:
        servers.start("gunicorn", gunicorn_command(servers.port))
        wait_until(
            lambda: AdminBrowser(servers.base).request("/_deploy/health")[0] == 200,
            "gunicorn to serve",
            timeout=WAIT_SECONDS,
        )
        browsers = [AdminBrowser(servers.base) for _ in range(READERS + WRITERS)]
        for browser in browsers:
            browser.log_in("loader", PASSWORD)
        # After the logins (which update last_login) and before any writer starts.
        before = database.rows()

        servers.start("orm", [PYTHON, "manage.py", "shell", "-c", ORM_WRITER])
        for number, browser in enumerate(browsers[:READERS]):
            threads.append(
                threading.Thread(
                    target=run_reader,
                    args=(browser, read_paths[number % 2 :] + read_paths[: number % 2], reads, stop),
                    kwargs={"limit": READS_PER_READER},
                )
            )
        for number, browser in enumerate(browsers[READERS:], start=1):
            threads.append(
                threading.Thread(target=run_writer, args=(browser, number, writes, stop, WRITES_PER_WRITER))
            )
        for thread in threads:
            thread.start()
        wait_until(
            lambda: (
                landed_since(writes, started, "http") >= WRITERS
                and landed_since(orm_attempts(orm_log), started, "orm") >= 1
            ),
            "both kinds of writer to write",
            timeout=WAIT_SECONDS,
            describe=lambda: seen(started),
        )

        for cycle in range(1, CYCLES + 1):
            switch(url, servers, timeline, "on", cycle)
            at_on = database.rows()
            on_since = timeline.switches[-1].returned
            # Hold deploy mode on until both kinds of writer have been refused inside the window.
            wait_until(
                lambda since=on_since: (
                    refused_since(writes, since, "http") >= REFUSALS_PER_WINDOW
                    and refused_since(orm_attempts(orm_log), since, "orm") >= REFUSALS_PER_WINDOW
                ),
                f"writers to be refused while deploy mode is on (cycle {cycle})",
                timeout=WAIT_SECONDS,
                describe=lambda since=on_since: seen(since),
            )
            on_rows.append((at_on, database.rows()))
            switch(url, servers, timeline, "off", cycle)
            off_since = timeline.switches[-1].returned
            wait_until(
                lambda since=off_since: (
                    landed_since(writes, since, "http") >= 2
                    and landed_since(orm_attempts(orm_log), since, "orm") >= 2
                ),
                f"writers to write again after deploy mode is off (cycle {cycle})",
                timeout=WAIT_SECONDS,
                describe=lambda since=off_since: seen(since),
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_JOIN_SECONDS)
        servers.stop()
    seconds = time.time() - started
    assert not any(thread.is_alive() for thread in threads), "a client thread did not stop"

    attempts = every_write()
    after = database.rows()

    # The windows come from the switch's own history: each change of the state row, which
    # must fall inside the span the test timed for its switch. (The first `on` also records
    # the row's creation, off: only changes are switches.)
    history, was_on = [], False
    for at, enabled in database.query(HISTORY):
        if bool(enabled) != was_on and as_timestamp(at) >= started:
            history.append((as_timestamp(at), bool(enabled)))
        was_on = bool(enabled)
    assert [enabled for _, enabled in history] == [s.mode == "on" for s in timeline.switches]
    for (at, _), entry in zip(history, timeline.switches, strict=True):
        assert entry.invoked <= at <= entry.returned, (entry, at)
        entry.committed = at

    # Every answer is right for the window it was sent and answered in; every read is a 200.
    wrong_answers = unexpected(reads + attempts, timeline)
    # A write landed exactly when its client was told so: no refused write was saved, no
    # accepted write lost (those straddling a switch included).
    landed_keys = {ml for (ml,) in database.query("SELECT ml_number FROM documents_submission")}
    landed_keys |= {name for (name,) in database.query("SELECT name FROM auth_group")}
    mismatched = [a for a in attempts if (a.key in landed_keys) != (a.status in LANDED)]

    # Rows that landed while deploy mode was on: between the snapshot taken as soon as `on`
    # returned and the one taken just before `off` was invoked (the drain lets writes that
    # committed before `on` returned land: they are legitimate; the answers above cover the
    # rest of the window, up to `off` changing the state). Writes while it was off, and during
    # a switch, are the load's purpose: the expected rows are the rows before plus every row
    # that landed outside those windows, so `added` counts exactly the rows that landed while
    # deploy mode was on, and `lost` any row there was before that is gone.
    landed_while_on: RowHashes = {}
    for at_on, before_off in on_rows:
        for table, rows in rows_between(at_on, before_off).items():
            landed_while_on[table] = landed_while_on.get(table, Counter()) + rows
    new_rows = rows_between(before, after)
    expected = {
        table: before.get(table, Counter())
        + (new_rows.get(table, Counter()) - landed_while_on.get(table, Counter()))
        for table in set(before) | set(after)
    }

    read_seconds: dict[str, list[float]] = {"switch": [], "on": [], "off": []}
    for read in reads:
        read_seconds[timeline.window(read)].append(read.seconds)
    latencies = {
        f"read_p{percent}_ms_{window}": percentile_ms(samples, percent)
        for window, samples in read_seconds.items()
        for percent in (50, 99)
    }
    record_scenario(
        f"load: {WORKERS} gunicorn workers, {READERS} readers, {WRITERS} admin writers + 1 ORM writer, "
        f"deploy mode on/off x{CYCLES}",
        attempts=len(attempts),
        writes_refused=sum(a.status in (503, "refused") for a in attempts),
        changes=compare(expected, after),
        exit_status=0,
        seconds=seconds,
        reads=len(reads),
        writes_landed=sum(a.status in LANDED for a in attempts),
        rows_landed_while_on=total(landed_while_on),
        wrong_answers=len(wrong_answers),
        answers_not_matching_rows=len(mismatched),
        by_window=dict(sorted(tally(reads + attempts, timeline).items())),
        switch_seconds=[round(s.returned - s.invoked, 2) for s in timeline.switches],
        **latencies,
    )
    assert wrong_answers == []
    assert mismatched == []


def test_an_admin_write_that_races_the_switch_on_gets_503_not_500(admin_client, monkeypatch):
    """An admin write let through by the middleware just before deploy mode went on gets 503, not 500.

    What the load test caught: the middleware reads "off" (its cached state), the switch
    lands, and the submission service, asking again, refuses with its own exception, which
    the middleware did not know; the request ended as a 500.
    """
    reads = iter([DeployModeStatus(enabled=False, source="database")])
    on = DeployModeStatus(enabled=True, source="database", reason="Release 42", changed_by="ops@host")
    monkeypatch.setattr(state, "current", lambda: next(reads, on))  # off for the middleware only
    before = row_hashes()

    response = admin_client.post(
        "/admin/documents/submission/add/",
        {"ml_number": "ML-777", "title": "Raced the switch", "submitted_by": "Grace Hopper"},
        HTTP_ACCEPT="text/html",
    )

    assert response.status_code == 503
    assert REFUSED_REQUEST in response.content.decode()
    assert compare(before, row_hashes()).added == 0
    assert not Submission.objects.filter(ml_number="ML-777").exists()


def test_deploy_mode_stays_on_for_every_admin_write_route_under_load(
    shared_database_url,  # noqa: F811 (the fixture imported above)
    tmp_path,
    record_scenario,
):
    """Deploy mode held on under load for many cache lifetimes refuses every admin write route and the ORM.

    Writers already hammering when it goes on: admin add, edit, an approve action and another
    app's add form, and an ORM writer. Every worker re-reads the state each second under load;
    from `on` returning, not one attempt may land: the protected rows stay exactly as they were.
    """
    url = shared_database_url
    database = shared_database(url)
    seeded = manage(url, "shell", "-c", SEED.replace("EditorFactory", "SuperuserFactory"), check=True).stdout
    submission_ids = next(line for line in seeded.splitlines() if line.startswith("SEEDED")).split()[1:]
    servers = Servers(url, tmp_path)
    stop = threading.Event()
    writes: list[Attempt] = []
    threads: list[threading.Thread] = []
    orm_log = tmp_path / "orm.log"
    started = time.time()
    try:
        servers.start("gunicorn", gunicorn_command(servers.port))
        wait_until(
            lambda: AdminBrowser(servers.base).request("/_deploy/health")[0] == 200,
            "gunicorn to serve",
            timeout=WAIT_SECONDS,
        )
        browsers = [AdminBrowser(servers.base) for _ in range(WRITERS)]
        for browser in browsers:
            browser.log_in("loader", PASSWORD)
        servers.start("orm", [PYTHON, "manage.py", "shell", "-c", ORM_WRITER])
        for number, browser in enumerate(browsers, start=1):
            threads.append(
                threading.Thread(
                    target=run_every_route_writer,
                    args=(browser, number, submission_ids, writes, stop, WRITES_PER_WRITER),
                )
            )
        for thread in threads:
            thread.start()
        wait_until(
            lambda: (
                landed_since(orm_attempts(orm_log), started, "orm") >= 1
                and landed_since(writes, started, "http") >= WRITERS
            ),
            "the writers to write",
            timeout=WAIT_SECONDS,
            describe=lambda: writers_seen(writes + orm_attempts(orm_log), started),
        )
        timeline = Timeline()
        switch(url, servers, timeline, "on", 1)
        on_returned = timeline.switches[-1].returned
        frozen = database.rows()
        # Held on for FROZEN_CACHE_LIFETIMES state-cache lifetimes (every process re-reads it that
        # often), and until every route and the ORM writer have been tried a few times since.
        stop.wait(FROZEN_CACHE_LIFETIMES * float(CACHE_SECONDS))

        def tried_since_on() -> Counter[str]:
            return Counter(
                a.path if a.client == "http" else "orm"
                for a in writes + orm_attempts(orm_log)
                if a.sent >= on_returned
            )

        wait_until(
            lambda: all(tried_since_on()[route] >= 2 for route in (*EVERY_ROUTE, "orm")),
            "every admin write route and the ORM writer to be tried while deploy mode is on",
            timeout=WAIT_SECONDS,
            describe=lambda: (
                f"{dict(tried_since_on())}; " + writers_seen(writes + orm_attempts(orm_log), on_returned)
            ),
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_JOIN_SECONDS)
        servers.stop()
        at_end = database.rows()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_JOIN_SECONDS)
        servers.stop()

    attempts = [a for a in writes + orm_attempts(orm_log) if a.sent >= on_returned]
    answers = Counter(f"{a.client} {a.path if a.client == 'http' else 'orm'} {a.status}" for a in attempts)
    let_through = [a for a in attempts if a.status not in (503, "refused")]
    record_scenario(
        f"deploy mode held on for {FROZEN_CACHE_LIFETIMES} cache lifetimes under {WRITERS} admin writers "
        "(add, edit, action, group add) + 1 ORM writer",
        attempts=len(attempts),
        writes_refused=len(attempts) - len(let_through),
        changes=compare(frozen, at_end),  # nothing may change: no write is legitimate here
        exit_status=0,
        seconds=time.time() - started,
        answers=dict(sorted(answers.items())),
    )
    assert let_through == []
    assert {a.path for a in attempts if a.client == "http"} >= set(EVERY_ROUTE)
