"""Benchmark backup_db and deploy_safe against the bare tools they wrap, on generated data.

    DATABASE_URL=... BENCH_ROWS=1000000 python benchmarks/bench_deploy_safe.py [--skip-generate]

Fills the database with benchmarks/generate.py (it replaces every documents row), then
prints three lines, each the median of --repeat runs, ours and the baseline alternating:
BENCH backup_db ours=<s> baseline=<s> ratio=<r> goal<=1.2   (baseline: pg_dump -Fc, or the
sqlite3 shell's .backup), BENCH backup_db_checked (no goal; baseline: the bare tools making
the same checks, see checked_backup), BENCH deploy_safe ours=<s> baseline=<s> ratio=<r> goal<=2.0
(baseline: backup_db then a bare migrate) and BENCH freeze_window (deploy_safe's freeze window, from
its reports, against a bare migrate of the same migration; goal<=1.5), then PROFILE lines: the
median of each of deploy_safe's steps from its --report, which leave out its start-up (not the goal). Both
deploys apply the test app tests/deploy_apps/schema, which is unapplied again between runs,
outside the timings.
Every command runs in its own process, as an operator would run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEPLOY_SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.deploy_apps.settings", "DEPLOY_TEST_APPS": "schema"}


def _run(command: list[str], **env: str) -> None:
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-2000:]}", file=sys.stderr)
        sys.exit(2)  # could not run: not a missed goal


def _manage(*args: str, **env: str) -> None:
    _run([PYTHON, str(ROOT / "manage.py"), *args, "--verbosity=0"], **env)


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def compare(
    ours: Callable[[], None], baseline: Callable[[], None], repeat: int, reset: Callable[[], None]
) -> tuple[float, float]:
    """Medians of `repeat` runs of each, alternating which goes first; `reset` runs before each."""
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for round_ in range(repeat):
        order = [("ours", ours), ("baseline", baseline)]
        for name, action in order if round_ % 2 == 0 else order[::-1]:
            reset()
            times[name].append(_timed(action))
    return statistics.median(times["ours"]), statistics.median(times["baseline"])


def bare_backup(url: str, target: Path) -> Callable[[], None]:
    parsed = urlparse(url)
    if parsed.scheme.startswith("postgres"):
        return lambda: _run(["pg_dump", "--format=custom", f"--dbname={url}", "--file", str(target)])
    return lambda: _run(["sqlite3", parsed.path, f".backup '{target}'"])


def checked_backup(url: str, target: Path) -> Callable[[], None]:
    """The bare tools making the checks backup_db makes, one after another, as an operator's
    script would: SQLite `.backup`, `PRAGMA integrity_check` and sha256sum (no fingerprints:
    no bare tool computes ours); PostgreSQL `pg_dump -Fc`, `pg_restore --list`, sha256sum
    and psql summing a hash of every row's text form, as ours does, over every table of the
    public schema (ours: the protected ones, which include every large table)."""
    parsed = urlparse(url)
    if not parsed.scheme.startswith("postgres"):

        def sqlite() -> None:
            _run(["sqlite3", parsed.path, f".backup '{target}'"])
            _run(["sqlite3", str(target), "PRAGMA integrity_check"])
            _run(["sha256sum", str(target)])

        return sqlite

    def postgresql() -> None:
        _run(["pg_dump", "--format=custom", f"--dbname={url}", "--file", str(target)])
        _run(["pg_restore", "--list", str(target)])
        _run(["sha256sum", str(target)])
        tables = subprocess.run(
            ["psql", url, "-Atc", "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        sums = " UNION ALL ".join(
            f'SELECT count(*), sum(hashtextextended(t::text, 0)) FROM "{table}" t' for table in tables
        )
        _run(["psql", url, "-Atc", f"SET jit = off; {sums}"])

    return postgresql


def _seconds(values: list[float]) -> str:
    return "[" + ", ".join(f"{value:.3f}" for value in values) + "]"


def report(name: str, ours: float, baseline: float, goal: float | None, baseline_is: str) -> None:
    ratio = ours / baseline
    goal_text = "none" if goal is None else f"{goal}"
    line = f"BENCH {name} ours={ours:.3f} baseline={baseline:.3f} ratio={ratio:.2f} goal<={goal_text}"
    print(f"{line}  # baseline: {baseline_is}", flush=True)


def profile(reports: list[Path]) -> None:
    """Per-step medians from deploy_safe's own reports: where its time goes, start-up excluded."""
    runs = [json.loads(path.read_text()) for path in reports]
    steps: dict[str, list[float]] = {}
    for run in runs:
        for step in run["steps"]:
            steps.setdefault(step["name"], []).append(step["seconds"])

    # From the first step to the report: steps that overlap (fingerprint within backup) count once.
    def wall(run: dict) -> float:
        finished, started = (datetime.fromisoformat(run[key]) for key in ("finished_at", "started_at"))
        return (finished - started).total_seconds()

    total = statistics.median(wall(run) for run in runs)
    print(f"PROFILE deploy_safe in_process={total:.3f}  # not the goal: without its start-up")
    for name, seconds in steps.items():
        print(f"PROFILE   {statistics.median(seconds):7.3f}  {name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "1000000")))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument(
        "--only", choices=("backup_db", "deploy_safe"), help="run one of the two benchmarks (default: both)"
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("Set DATABASE_URL to the scratch database to fill and benchmark; it loses its documents.")
    os.environ.setdefault("DJANGO_ENV", "test")
    if not args.skip_generate:
        # No fakes: deploy_safe's integrity pre-check would rightly refuse to deploy over them.
        never = str(args.rows + 1)
        _run(
            [
                PYTHON,
                str(ROOT / "benchmarks" / "generate.py"),
                "--rows",
                str(args.rows),
                "--fake-every",
                never,
            ]
        )
    scratch = Path(tempfile.mkdtemp(prefix="bench-deploy-safe-"))
    try:
        backups = scratch / "backups"

        def clear_backups() -> None:
            shutil.rmtree(backups, ignore_errors=True)
            backups.mkdir()

        target = backups / "backup"
        if args.only != "deploy_safe":
            ours, baseline = compare(
                lambda: _manage("backup_db", "--output", str(target)),
                bare_backup(url, target),
                args.repeat,
                clear_backups,
            )
            report(
                "backup_db", ours, baseline, 1.2, "pg_dump -Fc" if "postgres" in url else "sqlite3 .backup"
            )
            # No goal: what the same checks cost with the bare tools (see checked_backup).
            ours, baseline = compare(
                lambda: _manage("backup_db", "--output", str(target)),
                checked_backup(url, target),
                args.repeat,
                clear_backups,
            )
            checks = (
                "pg_dump -Fc, pg_restore --list, sha256sum, psql row-hash sums"
                if "postgres" in url
                else "sqlite3 .backup, PRAGMA integrity_check, sha256sum"
            )
            report("backup_db_checked", ours, baseline, None, checks)
        if args.only == "backup_db":
            return

        env = {**DEPLOY_SETTINGS, "DEPLOYGUARD_DEPLOY_LOG": str(scratch / "deploys.log")}

        def unapply() -> None:
            clear_backups()
            _manage("migrate", "schema", "zero", "--noinput", **env)

        reports: list[Path] = []

        def deploy_safe() -> None:
            reports.append(scratch / f"report-{len(reports)}.json")
            report_to = ("--report", str(reports[-1]))
            _manage("deploy_safe", "--allow-dirty", "--backup-dir", str(backups), *report_to, **env)

        def backup_then_migrate() -> None:
            _manage("backup_db", "--output", str(target))
            _manage("migrate", "--noinput", **env)

        ours, baseline = compare(deploy_safe, backup_then_migrate, args.repeat, unapply)
        report("deploy_safe", ours, baseline, 2.0, "backup_db + bare migrate")
        # What the site's users wait: deploy_safe's freeze window (from its reports) against a
        # bare migrate of the same migration, timed as a whole process, like an operator runs it.
        windows = [json.loads(path.read_text())["freeze_window_s"] for path in reports]
        bare_migrates = []
        for _ in range(args.repeat):
            unapply()
            bare_migrates.append(_timed(lambda: _manage("migrate", "--noinput", **env)))
        print(f"RUNS freeze_window ours={_seconds(windows)} baseline={_seconds(bare_migrates)}", flush=True)
        report(
            "freeze_window",
            statistics.median(windows),
            statistics.median(bare_migrates),
            1.5,
            "bare migrate of the same migration (a whole manage.py process)",
        )
        profile(reports)
        unapply()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
