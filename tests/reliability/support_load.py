"""The load test's parts: admin browsers in threads, an ORM writer process, the switch timeline.

Every request and every ORM attempt is logged with the wall-clock time it was sent and
answered (time.time(): one clock for every process on this machine), so that the test
can classify it by the deploy-mode window it ran in.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deployguard.fingerprint import sqlite_row_hash
from deployguard.guard import protected_tables
from tests.reliability.rows import RowHashes

REQUEST_TIMEOUT = 20

# Writes through the ORM only (no middleware, no service): the write guard alone stands in
# the way. It keeps writing until the test touches the stop file: refusals while deploy mode is
# on, however long a slow machine keeps it on, cannot use up its attempts before the test has
# seen it write again. WRITER_SECONDS and WRITER_MAX_ATTEMPTS only cap a test that hangs.
# One line per attempt: "<outcome> <started> <answered> <name>".
ORM_WRITER = """
import os, time
from django.contrib.auth.models import Group
from deployguard import DeployModeActive
stop, deadline = os.environ["WRITER_STOP_FILE"], time.monotonic() + float(os.environ["WRITER_SECONDS"])
for i in range(1, int(os.environ["WRITER_MAX_ATTEMPTS"]) + 1):
    if os.path.exists(stop) or time.monotonic() > deadline:
        why = "stop-file" if os.path.exists(stop) else "deadline"
        print(f"stopped {time.time():.6f} {time.time():.6f} {why}", flush=True)
        break
    name, started = f"load-orm-{i}", time.time()
    try:
        Group.objects.create(name=name)
        outcome = "ok"
    except DeployModeActive:
        outcome = "refused"
    except Exception as error:
        outcome = "error-" + type(error).__name__
    print(f"{outcome} {started:.6f} {time.time():.6f} {name}", flush=True)
    time.sleep(0.05)
else:
    print(f"stopped {time.time():.6f} {time.time():.6f} max-attempts", flush=True)
"""


@dataclass(frozen=True)
class Attempt:
    """One request (or ORM write): what, when it was sent and answered, and the answer."""

    kind: str  # "read" or "write"
    client: str  # "http" or "orm"
    path: str
    sent: float
    answered: float
    status: int | str  # HTTP status (0: no answer), or "ok"/"refused"/"error-…" for the ORM
    key: str = ""  # what a write tried to create: an ML number or a group name
    writer: str = ""  # which client sent it: "http writer 2", "orm writer"

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


def orm_attempts(log: Path) -> list[Attempt]:
    pattern = re.compile(r"^(\S+) ([\d.]+) ([\d.]+) (\S+)$")
    lines = log.read_text().splitlines() if log.exists() else []
    return [
        Attempt("write", "orm", "Group.objects.create", float(m[2]), float(m[3]), m[1], m[4], "orm writer")
        for line in lines
        if (m := pattern.match(line)) and m[1] != "stopped"
    ]


def orm_writer_stopped(log: Path) -> str:
    """Why the ORM writer process stopped ("stop-file" or "deadline"), or "" while it runs."""
    lines = log.read_text().splitlines() if log.exists() else []
    return next((line.rsplit(" ", 1)[-1] for line in lines if line.startswith("stopped ")), "")


def writers_seen(attempts: Iterable[Attempt], since: float, last: int = 3) -> str:
    """What each writer did since `since`, for a wait that gives up: its attempts, their answers,
    and its last few attempts with their times relative to `since`."""
    by_writer: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_writer.setdefault(attempt.writer or attempt.client, []).append(attempt)
    lines = []
    for writer, mine in sorted(by_writer.items()):
        recent = [a for a in mine if a.sent >= since]
        answers = Counter(str(a.status) for a in recent)
        tail = ", ".join(f"{a.status} at {a.sent - since:+.1f}s" for a in mine[-last:])
        lines.append(
            f"{writer}: {len(mine)} attempts in all, {len(recent)} since "
            f"({dict(sorted(answers.items()))}); last: {tail or 'none'}"
        )
    return "; ".join(lines) or "no attempts at all"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class AdminBrowser:
    """One logged-in admin user: a cookie jar and CSRF token, redirects not followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(
        self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, body, headers or {})  # noqa: S310 (http://127.0.0.1)
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:  # refused, reset or timed out: no answer
            return 0, b""

    def csrf_token(self) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")

    def log_in(self, username: str, password: str) -> None:
        self.request("/admin/login/")
        status, _ = self.request(
            "/admin/login/?next=/admin/",
            {"username": username, "password": password, "csrfmiddlewaretoken": self.csrf_token()},
        )
        assert status == 302, f"log in as {username}: {status}"

    def timed(
        self, kind: str, path: str, data: dict[str, str] | None = None, key: str = "", writer: str = ""
    ) -> Attempt:
        sent = time.time()
        status, _ = self.request(path, data)
        return Attempt(kind, "http", path, sent, time.time(), status, key, writer)


def run_reader(
    browser: AdminBrowser, paths: list[str], log: list[Attempt], stop: threading.Event, limit: int
) -> None:
    """GET `paths` in turn until stopped or `limit` requests were sent."""
    for n in range(limit):
        if stop.is_set():
            return
        log.append(browser.timed("read", paths[n % len(paths)]))
        stop.wait(0.03)


def run_writer(
    browser: AdminBrowser, number: int, log: list[Attempt], stop: threading.Event, limit: int
) -> None:
    """POST the admin's add-submission form, a new ML number each time, until stopped (`limit`
    only caps a test that hangs)."""
    for n in range(1, limit + 1):
        if stop.is_set():
            return
        ml_number = f"ML-{number}{n:04d}"
        form = {
            "ml_number": ml_number,
            "title": f"Interoperable widgets under load, part {number}.{n}",
            "submitted_by": "Grace Hopper",
            "csrfmiddlewaretoken": browser.csrf_token(),
        }
        writer = f"http writer {number}"
        log.append(browser.timed("write", "/admin/documents/submission/add/", form, ml_number, writer))
        stop.wait(0.06)


def switch_over_http(base: str, token: str, mode: str) -> tuple[int, dict]:
    """POST /_deploy/mode with the bearer token; the endpoint answers once the switch is done."""
    body = {"mode": mode, "reason": "Load test release", "by": "load test"}
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1)
        base + "/_deploy/mode",
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (our own 127.0.0.1)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"body": error.read().decode(errors="replace")}


# --- the timeline of switches, and what each attempt ran through ---------------------------


@dataclass
class Switch:
    mode: str  # "on" or "off"
    how: str  # "manage.py deploy_mode" or "POST /_deploy/mode"
    invoked: float
    returned: float = 0.0
    # When the state row changed: the switch's history record, read after the run. Before
    # it every process sees the old state; from `returned` on, every process sees the new one.
    committed: float = 0.0


@dataclass
class Timeline:
    """The switches in order. From `on` returning to the next `off` changing the state,
    deploy mode is on for every process; from `off` returning to the next `on` changing it,
    off. From a change to its switch's return, processes may see either: 'switch'."""

    switches: list[Switch] = field(default_factory=list)

    def on_windows(self) -> list[tuple[float, float]]:
        ons = [s for s in self.switches if s.mode == "on"]
        offs = [s for s in self.switches if s.mode == "off"]
        return [(on.returned, off.committed) for on, off in zip(ons, offs, strict=False)]

    def off_windows(self) -> list[tuple[float, float]]:
        ons = [s for s in self.switches if s.mode == "on"]
        offs = [s for s in self.switches if s.mode == "off"]
        starts = [float("-inf"), *(off.returned for off in offs)]
        ends = [*(on.committed for on in ons), float("inf")]
        return list(zip(starts, ends, strict=False))

    def switching(self) -> list[tuple[float, float]]:
        return [(s.committed, s.returned) for s in self.switches]

    def window(self, attempt: Attempt) -> str:
        """'on' or 'off' when the attempt was sent and answered inside one window; else 'switch'."""
        for name, windows in (("on", self.on_windows()), ("off", self.off_windows())):
            for start, end in windows:
                if start <= attempt.sent and attempt.answered <= end:
                    return name
        return "switch"


# Which answers are right in which window (the responses a browser sees).
EXPECTED = {
    ("write", "http", "off"): {302},
    ("write", "http", "on"): {503},
    ("write", "http", "switch"): {302, 503},
    ("write", "orm", "off"): {"ok"},
    ("write", "orm", "on"): {"refused"},
    ("write", "orm", "switch"): {"ok", "refused"},
}
LANDED = {302, "ok"}


def unexpected(attempts: Iterable[Attempt], timeline: Timeline) -> list[str]:
    """Every attempt whose answer is wrong for the window it ran in; reads must always be 200."""
    wrong = []
    for attempt in attempts:
        window = timeline.window(attempt)
        allowed = {200} if attempt.kind == "read" else EXPECTED[(attempt.kind, attempt.client, window)]
        if attempt.status not in allowed:
            what = f"{attempt.client} {attempt.kind} {attempt.path} {attempt.key}"
            wrong.append(f"{what} in {window}: {attempt.status}")
    return wrong


def percentile_ms(seconds: list[float], percent: int) -> float | None:
    """The nearest-rank percentile, in milliseconds; None with no samples."""
    if not seconds:
        return None
    if len(seconds) == 1:
        return round(seconds[0] * 1000, 1)
    return round(statistics.quantiles(seconds, n=100, method="inclusive")[percent - 1] * 1000, 1)


def tally(attempts: Iterable[Attempt], timeline: Timeline) -> Counter[str]:
    """Counts by kind, client, window and answer: 'write http on 503' and so on."""
    return Counter(f"{a.kind} {a.client} {timeline.window(a)} {a.status}" for a in attempts)


# --- the rows, read from a SQLite file the test's own connection cannot see ---------------------


def sqlite_file_row_hashes(path: Path) -> RowHashes:
    """rows.row_hashes() of a SQLite file, in one read transaction (one consistent snapshot)."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.create_function("row_hash", -1, sqlite_row_hash, deterministic=True)
        connection.execute("BEGIN")
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = [name for (name,) in tables]
        result: RowHashes = {}
        for table in sorted(protected_tables(name for name in names if not name.startswith("sqlite_"))):
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            quoted = ", ".join(f'"{column}"' for column in columns)
            rows = connection.execute(f'SELECT row_hash({quoted}) FROM "{table}"')  # noqa: S608
            result[table] = Counter(int(value) for (value,) in rows)
        connection.execute("COMMIT")
        return result
    finally:
        connection.close()


def rows_between(earlier: RowHashes, later: RowHashes) -> RowHashes:
    """Rows in `later` and not in `earlier`, per table (the rows that landed in between)."""
    return {table: later[table] - earlier.get(table, Counter()) for table in later}


def total(rows: RowHashes) -> int:
    return sum(counter.total() for counter in rows.values())


def run_every_route_writer(
    browser: AdminBrowser,
    number: int,
    submission_ids: list[str],
    log: list[Attempt],
    stop: threading.Event,
    limit: int,
) -> None:
    """POST every kind of admin write in turn (add, edit, an action, another app's add), until
    stopped or `limit`: each route reaches the database by a different way when let through."""
    # One submission to edit, another to approve: once approved, a submission is not editable.
    change = f"/admin/documents/submission/{submission_ids[0]}/change/"
    for n in range(limit):
        if stop.is_set():
            return
        token = browser.csrf_token()
        key = f"ML-{number}{n:04d}"
        path, form = [
            (
                "/admin/documents/submission/add/",
                {"ml_number": key, "title": f"Frozen, part {n}", "submitted_by": "Grace Hopper"},
            ),
            (change, {"title": f"Edited while frozen {key}", "submitted_by": "Grace Hopper"}),
            (
                "/admin/documents/submission/",
                {"action": "approve_selected", "_selected_action": submission_ids[1], "index": "0"},
            ),
            ("/admin/auth/group/add/", {"name": f"frozen-{key}"}),
        ][n % 4]
        form["csrfmiddlewaretoken"] = token
        log.append(browser.timed("write", path, form, key, f"http writer {number}"))
        stop.wait(0.03)
