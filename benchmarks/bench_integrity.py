"""Benchmark verify_integrity, fingerprints and the scrub dry run against hand-written SQL.

    DATABASE_URL=... python benchmarks/bench_integrity.py --rows 1000000 [--skip-generate]

Generates the data (benchmarks/generate.py), then prints one line per comparison:
BENCH <name> ours=<s> baseline=<s> ratio=<r> goal<=<g>, each the median of --repeat runs,
ours and the baseline alternating in the same process (benchmarks/common.py), plus
verify_integrity's peak memory in a fresh process.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# documents.matching's defaults as that module normalises them (match_key, then spaces and
# digits removed from a name): the rule compares these with the stored match keys.
WORDS = ("test", "fake", "dummy", "sample", "example", "lorem")
BARE_NAMES = ("anonymoususer", "test", "testuser")


def _has_word_sql(vendor: str, column: str) -> str:
    """A stored key holds one of WORDS as a whole word (keys are words separated by one space)."""
    if vendor == "postgresql":
        return f"{column} ~ '(^| )({'|'.join(WORDS)})( |$)'"
    return (
        "("
        + " OR ".join(
            f"(instr({column}, '{word}') > 0 AND instr(' ' || {column} || ' ', ' {word} ') > 0)"
            for word in WORDS
        )
        + ")"
    )


def _test_content(vendor: str, alias: str) -> str:
    """documents.E007 by hand, over the same stored match keys: a name is the whole bare key, a
    word a whole word of either key, and a missing key flags the row."""
    names = ", ".join(f"'{n}'" for n in BARE_NAMES)
    by_key, bare, title_key = (
        f"{alias}.{c}" for c in ("submitted_by_key", "submitted_by_bare_key", "title_key")
    )
    return (
        f"({bare} IN ({names}) OR {_has_word_sql(vendor, by_key)} OR {_has_word_sql(vendor, title_key)} "
        f"OR {by_key} = '' OR {bare} = '' OR {title_key} = '')"
    )


def hand_written_checks(vendor: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Per table: (FROM clause, {check: condition}) — the same checks, written by hand."""
    fmt = (
        (lambda col, prefix: f"{col} !~ '^{prefix}[0-9]+$'")
        if vendor == "postgresql"
        else (
            lambda col, prefix: (
                f"NOT ({col} GLOB '{prefix}[0-9]*' AND substr({col}, {len(prefix) + 1}) NOT GLOB '*[^0-9]*')"
            )
        )
    )
    true = "true" if vendor == "postgresql" else "1"
    not_production = f"(x.data_source <> 'production' OR x.is_legitimate <> {true})"
    submission = {
        "E001": fmt("x.ml_number", "ML-"),
        "E003": "x.status NOT IN ('submitted', 'approved', 'rejected', 'published')",
        "E005": not_production,
        "E007": _test_content(vendor, "x"),
        "E011": "x.status = 'published' AND NOT EXISTS (SELECT 1 FROM documents_publisheddraft d "
        "WHERE d.submission_id = x.id AND d.data_source <> 'quarantine')",
        "E020": "NOT EXISTS (SELECT 1 FROM documents_historicalsubmission h WHERE h.id = x.id "
        "AND h.history_type = '+' AND h.history_user_id IS NOT NULL AND h.history_change_reason <> '')",
        "E022": "EXISTS (SELECT 1 FROM documents_historicalsubmission h WHERE h.history_id = "
        "(SELECT max(h2.history_id) FROM documents_historicalsubmission h2 WHERE h2.id = x.id) AND NOT "
        "(h.ml_number = x.ml_number AND h.title = x.title AND h.submitted_by = x.submitted_by AND "
        "h.status = x.status AND h.data_source = x.data_source AND h.is_legitimate = x.is_legitimate))",
        "W001": "x.data_source = 'quarantine'",
    }
    draft = {
        "E002": fmt("x.name", "rfc"),
        "E004": "x.status NOT IN ('published', 'withdrawn')",
        "E006": not_production,
        "E008": "EXISTS (SELECT 1 FROM documents_submission s WHERE s.id = x.submission_id AND "
        f"{_test_content(vendor, 's')})",
        "E010": "NOT EXISTS (SELECT 1 FROM documents_submission s WHERE s.id = x.submission_id "
        "AND s.status = 'published')",
        "E012": "EXISTS (SELECT 1 FROM documents_submission s WHERE s.id = x.submission_id AND "
        f"(s.data_source <> 'production' OR s.is_legitimate <> {true}))",
        "E021": "NOT EXISTS (SELECT 1 FROM documents_historicalpublisheddraft h WHERE h.id = x.id "
        "AND h.history_type = '+' AND h.history_user_id = x.published_by_id "
        "AND h.history_change_reason <> '')",
        "E023": "EXISTS (SELECT 1 FROM documents_historicalpublisheddraft h WHERE h.history_id = "
        "(SELECT max(h2.history_id) FROM documents_historicalpublisheddraft h2 WHERE h2.id = x.id) AND NOT "
        "(h.name = x.name AND h.submission_id = x.submission_id AND h.status = x.status AND "
        "h.published_by_id = x.published_by_id AND h.data_source = x.data_source AND "
        "h.is_legitimate = x.is_legitimate))",
        "W002": "x.data_source = 'quarantine'",
    }
    return {
        "documents_submission": ("documents_submission x", submission),
        "documents_publisheddraft": ("documents_publisheddraft x", draft),
    }


def _count(condition: str, scoped: bool) -> str:
    where = f"x.data_source <> 'quarantine' AND ({condition})" if scoped else condition
    return f"sum(CASE WHEN {where} THEN 1 ELSE 0 END)"


def run_hand_written_counts(cursor, vendor: str) -> list[int]:
    """Every rule's count, as raw SQL: one conditional-aggregate pass per table, no samples."""
    counts: list[int] = []
    for _table, (source, checks) in hand_written_checks(vendor).items():
        columns = ", ".join(_count(cond, not name.startswith("W")) for name, cond in checks.items())
        cursor.execute(f"SELECT {columns} FROM {source}")
        counts += [count or 0 for count in cursor.fetchone()]
    return counts


def run_hand_written_verify(cursor, vendor: str) -> None:
    for _table, (source, checks) in hand_written_checks(vendor).items():
        columns = ", ".join(_count(cond, not name.startswith("W")) for name, cond in checks.items())
        cursor.execute(f"SELECT {columns} FROM {source}")
        counts = cursor.fetchone()
        for (_name, cond), count in zip(checks.items(), counts, strict=True):
            if count:
                cursor.execute(
                    f"SELECT x.id FROM {source} WHERE x.data_source <> 'quarantine' AND ({cond}) "
                    "ORDER BY x.id LIMIT 20"
                )
                cursor.fetchall()


def run_hand_written_scrub_counts(cursor, vendor: str) -> None:
    checks = hand_written_checks(vendor)
    sub_errors = " OR ".join(
        f"({c})" for n, c in checks["documents_submission"][1].items() if n.startswith("E")
    )
    draft_errors = " OR ".join(
        f"({c})" for n, c in checks["documents_publisheddraft"][1].items() if n.startswith("E")
    )
    cursor.execute(f"SELECT count(*), {_count(sub_errors, True)} FROM documents_submission x")
    cursor.fetchone()
    # The flagged submission of each draft, probed by primary key (an IN over the flagged set
    # inside an aggregate FILTER is an unhashed, quadratic subplan on PostgreSQL).
    flagged_submission = (
        "EXISTS (SELECT 1 FROM documents_submission s2 WHERE s2.id = x.submission_id "
        f"AND s2.data_source <> 'quarantine' AND ({sub_errors.replace('x.', 's2.')}))"
    )
    cursor.execute(
        f"SELECT count(*), {_count(f'({draft_errors}) OR {flagged_submission}', True)} "
        "FROM documents_publisheddraft x"
    )
    cursor.fetchone()


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument(
        "--only", choices=("verify", "rule", "fingerprint", "scrub"), action="append", default=[]
    )
    args = parser.parse_args()
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from benchmarks.common import compare, report
    from benchmarks.generate import generate

    vendor = connection.vendor
    if not args.skip_generate:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        generate(args.rows)
        print(
            f"generated {args.rows} submissions + drafts + history on {vendor} "
            f"in {time.perf_counter() - started:.1f}s"
        )

    def verify() -> None:
        try:
            call_command("verify_integrity", "--format", "json", stdout=io.StringIO())
        except SystemExit as findings:  # violations are findings: exit status 1, not an error
            assert findings.code == 1, findings

    def hand_verify() -> None:
        with connection.cursor() as cursor:
            run_hand_written_verify(cursor, vendor)

    only = set(args.only) or {"verify", "rule", "fingerprint", "scrub"}
    if "verify" in only:
        ours, base = compare(verify, hand_verify, args.repeat)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "verify_integrity", "--format", "json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
        report(
            "verify_integrity",
            ours,
            base,
            1.5,
            extra={"peak_rss_mb": f"{peak_mb:.0f}", "peak_rss_goal_mb": 200},
            checks={"peak_rss": peak_mb <= 200},
        )
    if "rule" in only:
        bench_test_content_rule(connection, args.repeat)
    if "fingerprint" in only:
        bench_fingerprint(connection, args.repeat)
    if "scrub" in only:

        def scrub_dry_run() -> None:
            call_command("scrub_fake_data", stdout=io.StringIO())

        def hand_scrub() -> None:
            with connection.cursor() as cursor:
                run_hand_written_scrub_counts(cursor, vendor)

        ours, base = compare(scrub_dry_run, hand_scrub, args.repeat)
        report("scrub_dry_run", ours, base, 2.0, note="baseline: raw counting queries")


def bench_test_content_rule(connection, repeat: int) -> None:
    """documents.E007 alone, the costliest rule: the engine's count of its rows against the
    hand-written count over the same stored keys (`_test_content`)."""
    from benchmarks.common import compare, report
    from deployguard.integrity import default_registry

    rule = default_registry.rules["documents.E007"]
    counts: dict[str, int] = {}

    def ours() -> None:
        counts["ours"] = rule.offending().count()

    def hand() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM documents_submission x WHERE x.data_source <> 'quarantine' "
                f"AND {_test_content(connection.vendor, 'x')}"
            )
            counts["baseline"] = cursor.fetchone()[0]

    ours_s, base_s = compare(ours, hand, repeat)
    report(
        "rule_E007",
        ours_s,
        base_s,
        None,
        extra={"rows": counts["ours"]},
        checks={"same_rows": counts["ours"] == counts["baseline"]},
        note="baseline: the same matching over the stored match keys, by hand",
    )


def bench_fingerprint(connection, repeat: int) -> None:
    from benchmarks.common import compare, report
    from deployguard.fingerprint import fingerprint_table
    from documents.models import Submission

    vendor = connection.vendor

    def hand_fingerprint() -> None:
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*), sum(hashtextextended(t::text, 0)) FROM documents_submission t"
                )
                cursor.fetchone()
        else:
            database = connection.settings_dict["NAME"]
            subprocess.run(
                [
                    shutil.which("sqlite3") or "sqlite3",
                    str(database),
                    "SELECT count(*) FROM documents_submission;",
                    ".sha3sum documents_submission",
                ],
                stdout=subprocess.DEVNULL,
                check=True,
            )

    ours, base = compare(lambda: fingerprint_table(Submission), hand_fingerprint, repeat)
    label = "count(*)+sum(hashtextextended)" if vendor == "postgresql" else "sqlite3 shell count(*)+.sha3sum"
    report("fingerprint", ours, base, 1.5, note=f"baseline: {label}")
    if vendor == "sqlite":
        # The design's other SQLite reference: count(*) plus the cheapest hand-written Python
        # hash registered on the connection (builtin hash(), fine for timing, not for baselines).
        columns = ", ".join(f.column for f in Submission._meta.concrete_fields)

        def hand_udf() -> None:
            connection.connection.create_function("bench_hash", -1, lambda *v: hash(v), deterministic=True)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*), total(bench_hash({columns})) FROM documents_submission")
                cursor.fetchone()

        ours, base = compare(lambda: fingerprint_table(Submission), hand_udf, repeat)
        # Informational: builtin hash() is no content hash (salted per process), so this is a
        # floor for any Python-side hash, not a baseline a user could run; the goal is above.
        report(
            "fingerprint_vs_python_udf",
            ours,
            base,
            None,
            note="reference: count(*)+total(builtin hash() udf), a floor, not a usable fingerprint",
        )


if __name__ == "__main__":
    main()
