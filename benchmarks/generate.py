"""Fill the documents tables with N published documents and their history, in bulk SQL.

    DATABASE_URL=... python benchmarks/generate.py --rows 1000000 [--fake-every 100]

Every row is generated inside the database (generate_series on PostgreSQL, a recursive
CTE on SQLite): no Python loop over rows. Each submission is published, has one draft,
and has two history records (created, published) naming a user and a reason; each
draft has one. One row in `--fake-every` is a fake, made one of three ways in turn:
a test submitter (through the "services", so with history), a creation without a
user, and a raw insert without any history. Existing documents rows are deleted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

TABLES = (
    "documents_historicalpublisheddraft",
    "documents_historicalsubmission",
    "documents_publisheddraft",
    "documents_submission",
    "documents_draftnumber",
)


def _series(vendor: str, rows: int) -> tuple[str, str]:
    """(WITH prefix, FROM clause) yielding i = 1..rows."""
    if vendor == "postgresql":
        return "", f"generate_series(1, {rows}) AS seq(i)"
    return (
        f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {rows}) ",
        "seq",
    )


def generate(rows: int, fake_every: int = 100) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from deployguard import allow_writes

    vendor = connection.vendor
    user_model = get_user_model()
    user, _ = user_model._base_manager.get_or_create(
        username="bench-editor", defaults={"is_staff": True, "is_superuser": True}
    )
    uid = user.pk
    now = "'2025-01-01 00:00:00+00'" if vendor == "postgresql" else "'2025-01-01 00:00:00'"
    true = "true" if vendor == "postgresql" else "1"
    with_, series = _series(vendor, rows)
    kind_test = f"(i % {fake_every * 3} = 0)"
    kind_no_user = f"(i % {fake_every * 3} = {fake_every})"
    kind_no_history = f"(i % {fake_every * 3} = {fake_every * 2})"
    user_unless = f"CASE WHEN {kind_no_user} THEN NULL ELSE {uid} END"
    submitter = f"CASE WHEN {kind_test} THEN 'Test User' ELSE 'Grace Hopper' END"
    title = "'Guidelines for interoperable widgets, part ' || i"
    # documents.matching.stored_keys of the two: what Submission.save() stores beside them.
    submitter_key = f"CASE WHEN {kind_test} THEN 'test user' ELSE 'grace hopper' END"
    submitter_bare_key = f"CASE WHEN {kind_test} THEN 'testuser' ELSE 'gracehopper' END"
    title_key = "'guidelines for interoperable widgets part ' || i"
    timings: dict[str, float] = {}
    statements = [
        (
            "submissions",
            f"{with_}INSERT INTO documents_submission (id, ml_number, title, submitted_by, status, "
            f"approved_by_id, data_source, is_legitimate, created_at, updated_at, "
            f"submitted_by_key, submitted_by_bare_key, title_key) "
            f"SELECT i, 'ML-' || i, {title}, {submitter}, 'published', {uid}, 'production', {true}, "
            f"{now}, {now}, {submitter_key}, {submitter_bare_key}, {title_key} FROM {series}",
        ),
        (
            "drafts",
            f"{with_}INSERT INTO documents_publisheddraft (id, name, submission_id, status, published_by_id, "
            f"published_at, data_source, is_legitimate) "
            f"SELECT i, 'rfc' || i, i, 'published', {uid}, {now}, 'production', {true} FROM {series}",
        ),
        (
            "submission history",
            f"{with_}INSERT INTO documents_historicalsubmission (id, history_origin, history_deploy_id, "
            f"ml_number, "
            f"title, submitted_by, status, data_source, is_legitimate, created_at, updated_at, "
            f"history_change_reason, approved_by_id, history_date, history_type, history_user_id, "
            f"submitted_by_key, submitted_by_bare_key, title_key) "
            f"SELECT i, 'command:generate', '', 'ML-' || i, {title}, {submitter}, s.status, 'production', "
            f"{true}, {now}, {now}, s.reason, CASE WHEN s.status = 'published' THEN {uid} END, {now}, s.t, "
            f"{user_unless}, {submitter_key}, {submitter_bare_key}, {title_key} FROM {series} "
            f"CROSS JOIN (SELECT 'submitted' AS status, 'Submitted' AS reason, "
            f"'+' AS t UNION ALL SELECT 'published', 'Ready', '~') s WHERE NOT {kind_no_history} "
            f"ORDER BY i, s.t",
        ),
        (
            "draft history",
            f"{with_}INSERT INTO documents_historicalpublisheddraft (id, history_origin, history_deploy_id, "
            f"name, "
            f"status, published_at, data_source, is_legitimate, history_change_reason, submission_id, "
            f"published_by_id, history_date, history_type, history_user_id) "
            f"SELECT i, 'command:generate', '', 'rfc' || i, 'published', {now}, 'production', {true}, "
            f"'Ready', i, {uid}, {now}, '+', {user_unless} FROM {series} WHERE NOT {kind_no_history}",
        ),
        (
            "draft counter",
            f"INSERT INTO documents_draftnumber (prefix, last_number) VALUES ('rfc', {rows})",
        ),
    ]
    # A scratch database seeded in bulk SQL, around the services: documents' seal lets it through
    # only inside allow_writes() (benchmarks are not deployed code).
    with allow_writes("benchmarks/generate.py seeds a scratch database"), connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"DELETE FROM {table}")
        for name, sql in statements:
            started = time.perf_counter()
            cursor.execute(sql)
            timings[name] = time.perf_counter() - started
        if vendor == "postgresql":
            for table, column in [
                ("documents_submission", "id"),
                ("documents_publisheddraft", "id"),
                ("documents_historicalsubmission", "history_id"),
                ("documents_historicalpublisheddraft", "history_id"),
            ]:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                    f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
                )
        started = time.perf_counter()
        cursor.execute("ANALYZE")
        timings["analyze"] = time.perf_counter() - started
    return timings


def add_approved(count: int) -> list[int]:
    """Add `count` approved submissions (created and approved by a second user, with their history)
    after the highest id, in bulk SQL; return their ids. For benchmarks that publish them."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from deployguard import allow_writes

    vendor = connection.vendor
    approver, _ = get_user_model()._base_manager.get_or_create(
        username="bench-approver", defaults={"is_staff": True, "is_superuser": True}
    )
    uid = approver.pk
    now = "'2025-01-02 00:00:00+00'" if vendor == "postgresql" else "'2025-01-02 00:00:00'"
    true = "true" if vendor == "postgresql" else "1"
    with allow_writes("benchmarks/generate.py seeds a scratch database"), connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM documents_submission")
        first = cursor.fetchone()[0] + 1
        cursor.execute("SELECT coalesce(max(history_id), 0) FROM documents_historicalsubmission")
        first_history = cursor.fetchone()[0] + 1
        with_, series = _series(vendor, count)
        cursor.execute(
            f"{with_}INSERT INTO documents_submission (id, ml_number, title, submitted_by, status, "
            f"approved_by_id, data_source, is_legitimate, created_at, updated_at, "
            f"submitted_by_key, submitted_by_bare_key, title_key) "
            f"SELECT {first - 1} + i, 'ML-' || ({first - 1} + i), 'Approved widget profile ' || i, "
            f"'Grace Hopper', 'approved', {uid}, 'production', {true}, {now}, {now}, 'grace hopper', "
            f"'gracehopper', 'approved widget profile ' || i FROM {series}"
        )
        cursor.execute(
            f"{with_}INSERT INTO documents_historicalsubmission (history_id, id, history_origin, "
            f"history_deploy_id, ml_number, title, submitted_by, status, data_source, is_legitimate, "
            f"created_at, updated_at, history_change_reason, approved_by_id, history_date, history_type, "
            f"history_user_id, submitted_by_key, submitted_by_bare_key, title_key) "
            f"SELECT {first_history - 1} + 2 * i - s.n, {first - 1} + i, 'command:generate', '', "
            f"'ML-' || ({first - 1} + i), 'Approved widget profile ' || i, 'Grace Hopper', s.status, "
            f"'production', {true}, {now}, {now}, s.reason, s.approver, {now}, s.t, {uid}, 'grace hopper', "
            f"'gracehopper', 'approved widget profile ' || i FROM {series} "
            f"CROSS JOIN (SELECT 1 AS n, 'submitted' AS status, 'Submitted' AS reason, NULL AS approver, "
            f"'+' AS t UNION ALL SELECT 0, 'approved', 'Approved', {uid}, '~') s"
        )
        if vendor == "postgresql":
            for table, column in [
                ("documents_submission", "id"),
                ("documents_historicalsubmission", "history_id"),
            ]:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                    f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
                )
    return list(range(first, first + count))


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fake-every", type=int, default=100)
    args = parser.parse_args()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    timings = generate(args.rows, args.fake_every)
    parts = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())
    print(f"Generated {args.rows} documents in {time.perf_counter() - started:.1f}s ({parts})")


if __name__ == "__main__":
    main()
