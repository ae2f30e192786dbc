"""Deploy mode's cost while it is off: requests per second and ORM inserts, with and without the guard.

Runs every measurement against the same app in the same process, interleaving calls with
and without deployguard's middleware and write guard, and reports each side's median round.
Prints one line per measurement (benchmarks/common.py):

    BENCH <name> ours=<seconds> baseline=<seconds> ratio=<ours/baseline> goal<=<limit>

Usage: python benchmarks/bench_deploy_mode.py  (or `make bench-deploy-mode`). Uses a fresh
SQLite file unless BENCH_DATABASE_URL names another (throwaway) database.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("SECRET_KEY", "benchmark-only-" + "k" * 40)
_tmp = tempfile.mkdtemp(prefix="bench-deploy-mode-")
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{_tmp}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from benchmarks import common  # noqa: E402
from deployguard import guard, state  # noqa: E402
from documents import services  # noqa: E402

MIDDLEWARE_PATH = "deployguard.middleware.DeployModeMiddleware"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "100"))
INSERTS = 10_000
# e.g. BENCH_MODE_ONLY=post_rps (not BENCH_ONLY: `make bench BENCH_ONLY=...` exports that one here)
ONLY = set(filter(None, os.environ.get("BENCH_MODE_ONLY", "").split(",")))
# The goals, as ratios of times with the guard to times without.
GOALS = {"get_rps": 1.03, "post_rps": 1.11, "orm_insert_10k": 1.05}


INSTALL_UID = "deployguard.guard.install"
# SQLite: each side's own raw connection (see own_sqlite_connections()).
_sqlite_raw: dict[bool, Any] = {}


def guard_installed(on: bool) -> None:
    """Install or remove the write guard on this and every future connection.

    Called before every timed call, so it does only what switching sides needs: the receiver
    is connected strongly (a weak connect() adds a weakref.finalize that is never collected,
    one per call), and on SQLite each side keeps its own raw connection (own_sqlite_connections()).
    """
    if on:
        connection_created.connect(guard.install, dispatch_uid=INSTALL_UID, weak=False)
        if not guard.is_installed(connection):
            connection.execute_wrappers.append(guard.write_guard)
    else:
        connection_created.disconnect(dispatch_uid=INSTALL_UID)
        if guard.is_installed(connection):
            connection.execute_wrappers.remove(guard.write_guard)
    if connection.vendor != "sqlite" or connection.connection is None:
        return  # the next connection gets the guard or not from the receiver
    if _sqlite_raw and connection.connection in _sqlite_raw.values() and not connection.in_atomic_block:
        connection.connection = _sqlite_raw[on]
    elif on:
        guard.install(connection)
    else:
        # The guard is also SQLite's authorizer (which, without the wrapper to hand it the
        # state, refuses once the state cache expires): the baseline has none.
        connection.connection.set_authorizer(None)


def own_sqlite_connections() -> None:
    """SQLite: give ours and the baseline a raw connection each, made once, as Django makes one.

    Ours has the guard's authorizer from the start, the baseline's has none. Setting an
    authorizer makes SQLite re-prepare every statement the connection has cached, so setting
    it on one shared connection before each of ours' calls (and removing it for the baseline)
    charged ours a re-prepare of every statement that the baseline, reusing what ours had
    prepared, never paid. No server pays that: a kept connection (CONN_MAX_AGE > 0) keeps its
    authorizer and its prepared statements; a new one per request (CONN_MAX_AGE = 0) prepares
    afresh on both sides. Each side now keeps its own, like two kept connections.
    """
    if connection.vendor != "sqlite":
        return
    guard_installed(False)
    connection.ensure_connection()
    baseline = connection.connection
    connection.connection = None
    guard_installed(True)
    connection.connect()  # the guard's connection_created receiver installs it, as on every connection
    _sqlite_raw.update({True: connection.connection, False: baseline})


def client(with_middleware: bool, user: User) -> Client:
    middleware = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE_PATH]
    if with_middleware:
        middleware = [MIDDLEWARE_PATH, *middleware]
    with override_settings(MIDDLEWARE=middleware):
        made = Client()
        made.handler.load_middleware()
    made.force_login(user)
    return made


def guarded(run: Callable[[], None], on: bool) -> Callable[[], None]:
    def call() -> None:
        guard_installed(on)
        run()

    return call


def interleaved(ours: Callable[[], None], baseline: Callable[[], None], count: int) -> tuple[float, float]:
    """Alternate single calls, so that drift (a growing table, a warming cache) hits both sides;
    each round sums `count` calls a side; the medians of ROUNDS rounds."""
    totals: dict[str, list[float]] = {"ours": [], "baseline": []}
    for round_ in range(ROUNDS):
        total = {"ours": 0.0, "baseline": 0.0}
        order = [("baseline", baseline), ("ours", ours)]
        for _ in range(count):
            for name, run in order if round_ % 2 == 0 else order[::-1]:
                guard_installed(name == "ours")
                started = time.perf_counter()
                run()
                total[name] += time.perf_counter() - started
        for name in totals:
            totals[name].append(total[name])
    guard_installed(True)
    return statistics.median(totals["ours"]), statistics.median(totals["baseline"])


def report(name: str, ours: float, baseline: float, extra: dict[str, object] | None = None) -> None:
    common.report(name, ours, baseline, GOALS[name], extra=extra)


def main() -> None:
    call_command("migrate", verbosity=0, interactive=False)
    user = User.objects.create_superuser("bench", "", "bench-password-not-secret")
    for number in range(50):
        services.create_submission(
            actor=user, ml_number=f"ML-{number + 1:03d}", title=f"Draft {number}", submitted_by="Bench"
        )
    state.clear_cache()
    own_sqlite_connections()
    print(f"database={connection.vendor} rounds={ROUNDS} requests={REQUESTS} inserts={INSERTS}")

    ours_client, baseline_client = client(True, user), client(False, user)
    url = "/admin/documents/submission/"

    def get(made: Client) -> Callable[[], None]:
        def run() -> None:
            assert made.get(url).status_code == 200

        return run

    if not ONLY or "get_rps" in ONLY:
        ours, baseline = interleaved(get(ours_client), get(baseline_client), REQUESTS)
        report(
            "get_rps",
            ours,
            baseline,
            {"ours_rps": f"{REQUESTS / ours:.0f}", "baseline_rps": f"{REQUESTS / baseline:.0f}"},
        )

    counter = iter(range(10**9))

    def post(made: Client) -> Callable[[], None]:
        def run() -> None:
            response = made.post("/admin/auth/group/add/", {"name": f"bench-{next(counter)}"})
            assert response.status_code == 302, response.status_code

        return run

    if not ONLY or "post_rps" in ONLY:
        ours, baseline = interleaved(post(ours_client), post(baseline_client), REQUESTS)
        report(
            "post_rps",
            ours,
            baseline,
            {"ours_rps": f"{REQUESTS / ours:.0f}", "baseline_rps": f"{REQUESTS / baseline:.0f}"},
        )

    def inserts() -> None:
        with transaction.atomic():
            for number in range(INSERTS):
                Group.objects.create(name=f"insert-{number}")
            transaction.set_rollback(True)

    if not ONLY or "orm_insert_10k" in ONLY:
        ours, baseline = common.compare(guarded(inserts, True), guarded(inserts, False), ROUNDS)
        guard_installed(True)
        report("orm_insert_10k", ours, baseline)


if __name__ == "__main__":
    main()
