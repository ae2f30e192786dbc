"""Benchmark the operations pages at scale: the integrity page and its recount against raw SQL.

    DATABASE_URL=... python benchmarks/bench_operations.py --rows 1000000 [--skip-generate]

Generates the data (benchmarks/generate.py; --skip-generate keeps what the database holds),
then, as a superuser through Django's test client (the whole request: middleware, session,
admin, template), prints, each the median of --repeat alternating runs (benchmarks/common.py):

    BENCH integrity_page ours=<GET> baseline=<raw counts> ratio=… goal<=1.5 check:cached_under_0.05s
    BENCH integrity_recount ours=<POST recount> baseline=<raw counts> ratio=… goal<=1.5
    BENCH activity_page ours=<GET> baseline=<raw GROUP BY> ratio=… goal<=1.5

The baseline of the first two is the raw counting queries (every rule's count, one pass of
conditional aggregates per table, hand-written: benchmarks/bench_integrity.py). The integrity
page shows stored counts: it must cost at most 1.5 times the raw queries and stay under 0.05 s
however large the tables (a whole admin page, through the middleware and the template; on a busy
machine the absolute figure is what suffers first). The recount counts for real, through the rules
engine, and must cost at most 1.5 times the raw queries.
The activity page is timed over the day the generated history falls on (every record of it)
against the same GROUP BY written by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

CACHED_LIMIT_S = 0.05
RECOUNT_GOAL = 1.5
ACTIVITY_GOAL = 1.5
INTEGRITY = "/admin/deployguard/integrityrun/"
ACTIVITY = "/admin/deployguard/operations/?start=2025-01-01&end=2025-01-01&bucket=hour&what=all"


def raw_activity(cursor, vendor: str, day: tuple[object, object]) -> None:
    """The activity page's aggregate by hand: history records per hour and origin kind."""
    bucket = (
        "(floor(extract(epoch FROM history_date) / 3600)::bigint * 3600)"
        if vendor == "postgresql"
        else "(CAST(strftime('%%s', history_date) AS INTEGER) / 3600 * 3600)"
    )
    # "%%": the query has parameters, so a literal percent sign is doubled (both drivers).
    kind = (
        "CASE WHEN history_deploy_id <> '' THEN 'deploy' "
        "WHEN history_origin LIKE 'request:%%' THEN 'request' "
        "WHEN history_origin LIKE 'command:%%' THEN 'command' WHEN history_origin LIKE 'job:%%' "
        "OR history_origin LIKE 'task:%%' OR history_origin LIKE 'process:%%' THEN 'job' ELSE 'unknown' END"
    )
    for table in ("documents_historicalsubmission", "documents_historicalpublisheddraft"):
        cursor.execute(
            f"SELECT {bucket}, {kind}, count(*) FROM {table} WHERE history_date >= %s AND history_date < %s "
            "AND history_type IN ('+', '~', '-') GROUP BY 1, 2",
            list(day),
        )
        rows = cursor.fetchall()
        assert all(bucket is not None for bucket, _, _ in rows), "the hand-written buckets must be hours"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "1000000")))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from benchmarks.bench_integrity import run_hand_written_counts
    from benchmarks.common import compare, report
    from benchmarks.generate import generate
    from deployguard import integrity_runs
    from deployguard.models_operations import IntegrityRun

    vendor = connection.vendor
    call_command("migrate", verbosity=0)
    if not args.skip_generate:
        started = time.perf_counter()
        generate(args.rows)
        print(f"generated {args.rows} documents on {vendor} in {time.perf_counter() - started:.1f}s")
    client = Client()
    client.force_login(get_user_model()._base_manager.get(username="bench-editor"))

    def raw_counts() -> None:
        with connection.cursor() as cursor:
            run_hand_written_counts(cursor, vendor)

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code == 200, response.status_code

    def recount() -> None:
        response = client.post(f"{INTEGRITY}recount/")
        assert response.status_code == 302, response.status_code

    # The page's counts are those the engine stores; the raw queries must agree with them.
    run = integrity_runs.record(computed_by="benchmark")
    with connection.cursor() as cursor:
        raw = run_hand_written_counts(cursor, vendor)
    same_counts = sorted(raw) == sorted(run.counts.values())

    ours, baseline = compare(lambda: get(INTEGRITY), raw_counts, args.repeat)
    met = report(
        "integrity_page",
        ours,
        baseline,
        RECOUNT_GOAL,
        extra={"cached_limit_s": CACHED_LIMIT_S},
        checks={"cached_under_0.05s": ours <= CACHED_LIMIT_S, "same_counts": same_counts},
        note="seconds per GET of the page (stored counts); baseline: raw counting queries",
    )
    ours, baseline = compare(recount, raw_counts, args.repeat)
    met &= report(
        "integrity_recount",
        ours,
        baseline,
        RECOUNT_GOAL,
        note="POST recount: every rule counted by the engine and stored; baseline: raw counting queries",
    )
    IntegrityRun.objects.exclude(pk=integrity_runs.latest().pk).delete()

    day = tuple(connection.ops.adapt_datetimefield_value(datetime(2025, 1, d, tzinfo=UTC)) for d in (1, 2))

    def raw_activity_queries() -> None:
        with connection.cursor() as cursor:
            raw_activity(cursor, vendor, day)

    ours, baseline = compare(lambda: get(ACTIVITY), raw_activity_queries, args.repeat)
    met &= report(
        "activity_page",
        ours,
        baseline,
        ACTIVITY_GOAL,
        note="GET of a day holding every generated history record; baseline: the same GROUP BY by hand",
    )
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
