"""Benchmark the admin at scale: changelists against the same page over 1,000 rows, and publishing.

    DATABASE_URL=<full> BENCH_SMALL_DATABASE_URL=<small> python benchmarks/bench_admin.py --rows N

The full database gets N generated documents (benchmarks/generate.py; --skip-generate keeps
what it holds), the small one 1,000. Both are served by the same process and the same admin:
the benchmark swaps which database is Django's "default" between requests, so each round
alternates full and small, and prints, with the query count of one page on each side:

    BENCH changelist_<model> ours=<full> baseline=<1,000 rows> ratio=… goal<=1.5 queries_full=…

Publishing goes through the real action on the full database: the action POST, which shows
the confirmation page, then the confirming POST with a reason, as a superuser. It publishes
1,000 and 10 freshly approved submissions in alternating rounds and compares the time per row;
queries per row are counted for both, and the cost of each further row (from 1, 10 and 1,000)
must be the same.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

SMALL_ROWS = 1_000
PAGES_PER_ROUND = 5
CHANGELIST_GOAL = 1.5
PUBLISH_GOAL = 1.2
PUBLISH_SIZES = (1_000, 10)
STATE_TABLE = "deployguard_deploymodestate"


def _add_small_database() -> None:
    """Declare the small database as a copy of the default's settings with another name."""
    from django.conf import settings

    url = os.environ.get("BENCH_SMALL_DATABASE_URL")
    if not url:
        sys.exit("Set BENCH_SMALL_DATABASE_URL to a scratch database for the 1,000-row side.")
    small = copy.deepcopy(settings.DATABASES["default"])
    parsed = urlparse(url)
    small["NAME"] = parsed.path if url.startswith("sqlite") else parsed.path.lstrip("/")
    settings.DATABASES["small"] = small


class Databases:
    """Point Django's default connection at the full or the small database."""

    def __init__(self) -> None:
        from django.db import connections

        self.connections = connections
        self.wrappers = {"full": connections["default"], "small": connections["small"]}

    def use(self, which: str) -> None:
        self.connections["default"] = self.wrappers[which]


def count_queries(action) -> tuple[int, int]:
    """(queries, of which reads of the deploy-mode state) for one call on the current default
    database, from a cold state cache, so that every side pays the once-a-second state read."""
    from django.db import connection

    from deployguard import state

    seen = {"all": 0, "state": 0}

    def counter(execute, sql, params, many, context):
        seen["all"] += 1
        seen["state"] += STATE_TABLE in sql
        return execute(sql, params, many, context)

    # A process's first state read on a database also checks the state table exists: once per
    # process and database, not per page. With two databases swapped under one state cache,
    # that check would land on whichever side reads first: take it before counting.
    state.clear_cache()
    state.current()
    state.clear_cache()
    with connection.execute_wrapper(counter):
        action()
    return seen["all"], seen["state"]


def bench_changelists(databases: Databases, repeat: int) -> bool:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from benchmarks.common import compare, report

    clients = {}
    for which in ("full", "small"):
        databases.use(which)
        client = Client()
        client.force_login(get_user_model()._base_manager.get(username="bench-editor"))
        clients[which] = client
    met = True
    for model in ("submission", "publisheddraft"):
        url = f"/admin/documents/{model}/"

        def pages(which: str, url: str = url) -> None:
            databases.use(which)
            for _ in range(PAGES_PER_ROUND):
                response = clients[which].get(url)
                assert response.status_code == 200, response.status_code

        full, small = compare(lambda: pages("full"), lambda: pages("small"), repeat)
        queries = {}
        for which in ("full", "small"):
            databases.use(which)
            queries[which] = count_queries(lambda which=which, url=url: clients[which].get(url))
        met &= report(
            f"changelist_{model}",
            full / PAGES_PER_ROUND,
            small / PAGES_PER_ROUND,
            CHANGELIST_GOAL,
            extra={
                "queries_full": queries["full"][0],
                "queries_1000": queries["small"][0],
                "state_reads": queries["full"][1],
            },
            checks={"same_queries": queries["full"][0] == queries["small"][0]},
            note="seconds per page; baseline: the same page over 1,000 rows",
        )
    databases.use("full")
    return met


def bench_publish(repeat: int) -> bool:
    """Each timed round publishes 1,000 rows and 10: fewer rounds than the pages need."""
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
    from django.contrib.auth import get_user_model
    from django.test import Client

    from benchmarks.common import report
    from benchmarks.generate import add_approved
    from documents.models import Submission

    # An operator selects a thousand rows the way the admin allows: filter to the approved ones,
    # then "Select all". (A thousand ticked ids would exceed DATA_UPLOAD_MAX_NUMBER_FIELDS.)
    url = "/admin/documents/submission/?status__exact=approved"
    client = Client()
    client.force_login(get_user_model()._base_manager.get(username="bench-editor"))
    action = {"action": "publish_selected", "select_across": "1", "index": "0"}

    def publish_all_approved() -> None:
        # The browser sends the ticked rows of the page it shows, and select_across for the rest.
        page = [
            str(pk) for pk in Submission.objects.filter(status="approved").values_list("pk", flat=True)[:50]
        ]
        shown = client.post(url, {**action, ACTION_CHECKBOX_NAME: page})
        assert shown.status_code == 200 and b"Yes, publish" in shown.content, shown.status_code
        # Confirm as the browser would: send back the form's hidden fields, plus a reason.
        hidden = re.findall(rb'<input type="hidden" name="([^"]+)" value="([^"]*)"', shown.content)
        form: dict[str, list[str]] = {}
        for name, value in hidden:
            form.setdefault(name.decode(), []).append(value.decode())
        form["reason"] = ["Benchmark: publishing through the admin action"]
        done = client.post(url, form)
        assert done.status_code == 302, done.status_code

    def publish(count: int, counted: dict[int, tuple[int, int]] | None = None) -> float:
        """Approve `count` fresh submissions (untimed), publish them all; return the seconds taken
        or, given `counted`, record the queries the two POSTs made there instead."""
        ids = add_approved(count)
        started = time.perf_counter()
        if counted is None:
            publish_all_approved()
        else:
            counted[count] = count_queries(publish_all_approved)
        elapsed = time.perf_counter() - started
        published = Submission.objects.filter(pk__in=ids, status=Submission.Status.PUBLISHED).count()
        assert published == count, f"published {published} of {count}"
        return elapsed

    # The counted runs, smallest first, also warm both sides up.
    sizes = (1, *sorted(PUBLISH_SIZES))
    queries: dict[int, tuple[int, int]] = {}
    for size in sizes:
        publish(size, counted=queries)
    per_row: dict[int, list[float]] = {size: [] for size in PUBLISH_SIZES}
    for round_ in range(repeat):
        for size in PUBLISH_SIZES if round_ % 2 == 0 else PUBLISH_SIZES[::-1]:
            per_row[size].append(publish(size) / size)
    big, small = PUBLISH_SIZES
    # Row-driven queries only: the deploy-mode state is read once a second, whatever the row count.
    rows_only = {size: total - state for size, (total, state) in queries.items()}
    marginal_small = (rows_only[small] - rows_only[1]) / (small - 1)
    marginal_big = (rows_only[big] - rows_only[small]) / (big - small)
    return report(
        "publish_action_per_row",
        statistics.median(per_row[big]),
        statistics.median(per_row[small]),
        PUBLISH_GOAL,
        extra={
            f"queries_per_row_{big}": f"{queries[big][0] / big:.2f}",
            f"queries_per_row_{small}": f"{queries[small][0] / small:.2f}",
            "queries_1_10_1000": f"{queries[1][0]}/{queries[small][0]}/{queries[big][0]}",
            "extra_queries_per_row_1_to_10": f"{marginal_small:.2f}",
            f"extra_queries_per_row_10_to_{big}": f"{marginal_big:.2f}",
        },
        # The integrity monitor's batched check adds one query per 500 rows and model: allowed.
        checks={"constant_queries_per_row": round(marginal_big) == round(marginal_small)},
        note=f"seconds per row, {big} rows vs {small}; action POST + confirmation POST",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "1000000")))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--publish-repeat", type=int, default=3)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--only", choices=("changelist", "publish"), action="append", default=[])
    args = parser.parse_args()
    _add_small_database()

    import django

    django.setup()
    from django.core.management import call_command

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
    only = set(args.only) or {"changelist", "publish"}
    met = True
    if "changelist" in only:
        met &= bench_changelists(databases, args.repeat)
    if "publish" in only:
        met &= bench_publish(args.publish_repeat)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
