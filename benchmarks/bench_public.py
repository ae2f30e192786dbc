"""Benchmark the public site: its pages at N published drafts against 1,000, and a document page's throughput.

    DATABASE_URL=<full> BENCH_SMALL_DATABASE_URL=<small> \
        python benchmarks/bench_public.py --rows N [--skip-generate] [--only scale|throughput]

Scale: the full database gets N generated documents (benchmarks/generate.py: one in a
hundred is a fake, which no page may show), the small one 1,000. One process serves both
through Django's test client, swapping which is "default" between requests
(bench_admin.Databases), alternating sides each round, and prints per page:

    BENCH public_<page> ours=<full> baseline=<1,000 rows> ratio=… goal<=1.2 queries_full=… queries_1000=…

Throughput: gunicorn (2 sync workers, persistent database connections) on 127.0.0.1
serves the site over the full database plus a bare view that renders the same document
template from a dict, with no query. A second process sends the same bounded load to each
(BENCH_REQUESTS requests, BENCH_CONCURRENCY at a time, new connection each), alternating
which goes first, for BENCH_ROUNDS rounds; the line compares seconds per request:

    BENCH public_document_rps ours=<s/request> baseline=<bare s/request> ratio=… goal<=1.3 rps_ours=…

The server and the load process are stopped at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Persistent connections, as a production site keeps them: a connection per request would be most
# of a page's cost, and (on PostgreSQL) would plan every read again instead of once per connection.
os.environ.setdefault("CONN_MAX_AGE", "60")

SMALL_ROWS = 1_000
PAGES_PER_ROUND = 5
SCALE_GOAL = 1.2
THROUGHPUT_GOAL = 1.3
BARE_PATH = "/_bench/bare-document/"  # benchmarks/public_urls.py
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "400"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
SERVER_START_TIMEOUT = 120


def visible_name(rows: int) -> str:
    """A document the generator made legitimate (its fakes are every hundredth), half way through."""
    number = rows // 2 + 1
    return f"rfc{number + 1 if number % 100 == 0 else number}"


# --- the server side, for gunicorn ----------------------------------------------------------------


def serve() -> Any:
    """gunicorn's application factory (`benchmarks.bench_public:serve()`): the project's WSGI application,
    routed through benchmarks/public_urls.py (the project's routes, plus the bare view)."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    settings.ROOT_URLCONF = "benchmarks.public_urls"  # this benchmark's server only
    return get_wsgi_application()


# --- the load process ----------------------------------------------------------------------------


def load(base: str, paths: list[str], requests: int, concurrency: int, rounds: int) -> None:
    """Send `requests` GETs to each path per round, `concurrency` at a time; print each batch's seconds."""

    def batch(url: str) -> float:
        remaining = iter(range(requests))
        lock = threading.Lock()
        failures: list[str] = []

        def worker() -> None:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                try:
                    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 (127.0.0.1)
                        answer.read()
                        if answer.status != 200:
                            failures.append(str(answer.status))
                except Exception as error:
                    failures.append(repr(error))

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise SystemExit(f"{len(failures)} of {requests} requests to {url} failed, e.g. {failures[0]}")
        return time.perf_counter() - started

    for path in paths:  # warm both: connections, template caches, compiled SQL
        batch(base + path)
    for round_ in range(rounds):
        order = paths if round_ % 2 == 0 else paths[::-1]
        for path in order:
            print(json.dumps({"path": path, "seconds": batch(base + path) / requests}), flush=True)


# --- the benchmark -------------------------------------------------------------------------------


def bench_scale(databases: Any, rows: int, repeat: int) -> bool:
    from django.test import Client

    from benchmarks.bench_admin import count_queries
    from benchmarks.common import compare, report, spread
    from documents.listing import Cursor, public_page
    from documents.selectors import public_document

    client = Client()
    sizes = {"full": rows, "small": SMALL_ROWS}
    # The same places on each side: the first page, a page half way back, a document half way.
    deep: dict[str, str] = {}
    for which, size in sizes.items():
        databases.use(which)
        first = public_page()
        assert first.documents, f"the {which} database shows no documents"
        deep[which] = Cursor(first.documents[0].published_at, size // 2).token
        assert public_document(visible_name(size)) is not None, f"{visible_name(size)} is not public"
        shown = {d.name for d in first.documents}
        fakes = {f"rfc{n}" for n in range(100, size + 1, 100)}
        assert not shown & fakes, f"the {which} listing shows fakes: {sorted(shown & fakes)}"
    pages = {
        "index": lambda which: "/",
        "index_deep": lambda which: f"/?before={deep[which]}",
        "document": lambda which: f"/{visible_name(sizes[which])}/",
        "feed": lambda which: "/feed/",
        "search_common": lambda which: "/?q=interoperable+widgets",
        "search_rare": lambda which: "/?q=nothing+matches+this",
    }
    goals = {"index": SCALE_GOAL, "index_deep": SCALE_GOAL, "document": SCALE_GOAL, "feed": SCALE_GOAL}
    met = True
    for page, url_of in pages.items():

        def get(which: str, url_of: Any = url_of) -> None:
            databases.use(which)
            for _ in range(PAGES_PER_ROUND):
                response = client.get(url_of(which))
                assert response.status_code == 200, (url_of(which), response.status_code)

        runs: dict[str, list[float]] = {}
        full, small = compare(lambda: get("full"), lambda: get("small"), repeat, samples=runs)
        queries = {}
        for which in sizes:
            databases.use(which)
            queries[which] = count_queries(lambda which=which, url_of=url_of: client.get(url_of(which)))[0]
        met &= report(
            f"public_{page}",
            full / PAGES_PER_ROUND,
            small / PAGES_PER_ROUND,
            goals.get(page),
            extra={
                "queries_full": queries["full"],
                "queries_1000": queries["small"],
                "spread_full": spread(runs["ours"], PAGES_PER_ROUND),
                "spread_1000": spread(runs["baseline"], PAGES_PER_ROUND),
            },
            checks={"same_queries": queries["full"] == queries["small"]} if page in goals else None,
            note=f"seconds per page; baseline: the same page over {SMALL_ROWS:,} rows",
        )
    databases.use("full")
    return met


def bench_throughput(database_url: str, rows: int) -> bool:
    from benchmarks.common import report, spread

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ours = f"/{visible_name(rows)}/"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_ENV": "test",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--worker-class", "sync", "--log-level", "warning", "benchmarks.bench_public:serve()"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    loader = None
    try:
        _wait_for(base + BARE_PATH, server)
        _wait_for(base + ours, server)
        loader = subprocess.Popen(
            [sys.executable, __file__, "--load", base, ours, BARE_PATH],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        output, _ = loader.communicate(timeout=3600)
        if loader.returncode:
            raise SystemExit(f"the load process exited {loader.returncode}")
    finally:
        for process in (loader, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM) if process is server else process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL) if process is server else process.kill()
                    process.wait()
    seconds: dict[str, list[float]] = {ours: [], BARE_PATH: []}
    for line in output.splitlines():
        record = json.loads(line)
        seconds[record["path"]].append(record["seconds"])
    mine, bare = statistics.median(seconds[ours]), statistics.median(seconds[BARE_PATH])
    return report(
        "public_document_rps",
        mine,
        bare,
        THROUGHPUT_GOAL,
        extra={
            "rps_ours": f"{1 / mine:.0f}",
            "rps_bare": f"{1 / bare:.0f}",
            "spread_ours": spread(seconds[ours]),
            "spread_bare": spread(seconds[BARE_PATH]),
            "rounds": len(seconds[ours]),
        },
        note=f"seconds per request through gunicorn, {REQUESTS} requests x {CONCURRENCY} at a time per round",
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited {server.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (127.0.0.1)
                if answer.status == 200:
                    return
                last = str(answer.status)
        except Exception as error:
            last = repr(error)
        time.sleep(0.5)
    raise SystemExit(f"gunicorn did not answer {url} with 200 within {SERVER_START_TIMEOUT}s (last: {last})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "1000000")))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--only", choices=("scale", "throughput"), action="append", default=[])
    parser.add_argument("--load", nargs="+", metavar=("BASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(args.load[0], args.load[1:], REQUESTS, CONCURRENCY, ROUNDS)
        return

    from benchmarks.bench_admin import Databases, _add_small_database

    _add_small_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from benchmarks.generate import generate

    databases = Databases()
    for which, rows in (("small", SMALL_ROWS), ("full", args.rows)):
        databases.use(which)
        call_command("migrate", verbosity=0)
        if which == "small" or not args.skip_generate:
            started = time.perf_counter()
            generate(rows)
            print(
                f"generated {rows} documents in the {which} database in {time.perf_counter() - started:.1f}s"
            )
    databases.use("full")
    only = set(args.only) or {"scale", "throughput"}
    met = True
    if "scale" in only:
        met &= bench_scale(databases, args.rows, args.repeat)
    if "throughput" in only:
        connections.close_all()
        met &= bench_throughput(os.environ["DATABASE_URL"], args.rows)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
