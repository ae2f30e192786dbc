"""Benchmark scrub_fake_data --apply --force and --restore: time and peak memory, in batches.

    DATABASE_URL=... python benchmarks/bench_scrub.py --rows 1000000 [--fake-every 10] [--skip-generate]

Generates the data (benchmarks/generate.py; one row in --fake-every is a fake, a third of them
drafts' submissions too), then runs each command once in a fresh process and prints:

    BENCH scrub_apply ours=<s> baseline=<s> ratio=… goal<=none peak_rss_mb=… check:peak_rss=pass|fail
    BENCH scrub_restore ours=<s> baseline=<s> ratio=… goal<=none peak_rss_mb=… check:peak_rss=pass|fail

The baseline is a hand-written UPDATE of the generated fakes and their drafts (no rule pass,
no history, no run record, no batches): what finding the rows and the bookkeeping cost. The
goal is memory: the peak resident size stays under PEAK_RSS_GOAL_MB however many rows (the
scrub works in batches of deployguard.scrub.BATCH_ROWS).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

PEAK_RSS_GOAL_MB = 200


def run_manage(*args: str) -> tuple[float, float]:
    """(seconds, peak resident MB) of `manage.py args` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return seconds, peak


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 1_000_000)))
    parser.add_argument("--fake-every", type=int, default=10)
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from benchmarks.common import report
    from benchmarks.generate import generate
    from deployguard import allow_writes
    from deployguard.models_integrity import ScrubRun

    if not args.skip_generate:
        call_command("migrate", verbosity=0)
        generate(args.rows, args.fake_every)

    false = "false" if connection.vendor == "postgresql" else "0"
    true = "true" if connection.vendor == "postgresql" else "1"

    def hand_update(data_source: str, legit: str) -> float:
        """The generated fakes (every --fake-every'th submission) and their drafts, in two UPDATEs,
        around the seal as generate.py writes: what the scrub changes, without its bookkeeping."""
        started = time.perf_counter()
        with allow_writes("benchmarks/bench_scrub.py's hand-written baseline"), connection.cursor() as cursor:
            for table, key in (("documents_submission", "id"), ("documents_publisheddraft", "submission_id")):
                cursor.execute(
                    f"UPDATE {table} SET data_source = '{data_source}', is_legitimate = {legit} "
                    f"WHERE {key} % {args.fake_every} = 0"
                )
        return time.perf_counter() - started

    base_apply = hand_update("quarantine", false)
    hand_update("production", true)

    apply_s, apply_mb = run_manage("scrub_fake_data", "--apply", "--force", "--reason", "benchmark")
    run = ScrubRun.objects.order_by("-created_at").first()
    counts = run.counts if run else {}
    report(
        "scrub_apply",
        apply_s,
        base_apply,
        None,
        extra={"rows": args.rows, "quarantined": sum(counts.values()), "peak_rss_mb": f"{apply_mb:.0f}"},
        checks={"peak_rss": apply_mb <= PEAK_RSS_GOAL_MB},
    )
    restore_s, restore_mb = run_manage("scrub_fake_data", "--restore", run.id if run else "none")
    base_restore = hand_update("production", true)
    report(
        "scrub_restore",
        restore_s,
        base_restore,
        None,
        extra={"rows": args.rows, "peak_rss_mb": f"{restore_mb:.0f}"},
        checks={"peak_rss": restore_mb <= PEAK_RSS_GOAL_MB},
    )


if __name__ == "__main__":
    main()
