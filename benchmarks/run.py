"""Run every benchmark on SQLite and, when it is reachable, PostgreSQL; say which goals passed.

    python benchmarks/run.py [--rows 1000000] [--engines sqlite,postgresql] [--only admin,...]
    python benchmarks/run.py --table     # RESULTS.md's tables, from the last run's var/bench/*.txt

`make bench` runs this. Each benchmark is a script in benchmarks/ run in its own process
against scratch databases that it fills with benchmarks/generate.py (so every existing
documents row in them is replaced): on SQLite, files under var/bench/; on PostgreSQL,
databases on --pg-url that this creates when missing. Each prints
`BENCH <name> ours=… baseline=… ratio=… goal<=…` lines (benchmarks/common.py); this copies
them, with what ran and on what machine, to var/bench/<engine>.txt and ends with a summary.
Exit status: 0 when every goal was met, 1 when one was missed or a benchmark failed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
ENGINES = ("sqlite", "postgresql")
BENCHMARKS = (
    "integrity",
    "admin",
    "operations",
    "deploy_mode",
    "deploy_safe",
    "audit_write_paths",
    "jobs",
    "public",
)
# --pg-prefix (BENCH_PG_PREFIX) renames them, e.g. per engineer on a shared server: <prefix>_int, ...
PG_DATABASES = {
    "data": "deploysafe_int",
    "small": "deploysafe_bench_small",
    # Not make bench-deploy-safe's deploysafe_bds: someone tuning backups may be running that one.
    "deploy_safe": "deploysafe_bench_ds",
    "deploy_mode": "deploysafe_bench_mode",
    "jobs": "deploysafe_bench_jobs",
}
# The databases each benchmark uses (roles of PG_DATABASES): only those are created or reset.
ROLES = {
    "integrity": ("data",),
    "admin": ("data", "small"),
    "deploy_mode": ("deploy_mode",),
    "deploy_safe": ("deploy_safe",),
    "audit_write_paths": (),
    "public": ("data", "small"),
    "operations": ("data",),
    "jobs": ("jobs",),
}
LINE = re.compile(r"^BENCH (?P<name>\S+) (?P<fields>.*?)(?:  # (?P<note>.*))?$")
QUIET = " INFO deployguard.audit "  # one log line per unsafe request: hidden from the console


@dataclass
class Result:
    engine: str
    name: str
    fields: dict[str, str]
    note: str = ""
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def goal(self) -> float | None:
        goal = self.fields.get("goal<")
        return None if goal in (None, "none") else float(goal.lstrip("="))

    @property
    def ratio(self) -> float:
        return float(self.fields["ratio"])

    @property
    def status(self) -> str:
        if self.goal is None and not self.checks:
            return "info"
        met = (self.goal is None or self.ratio <= self.goal) and all(self.checks.values())
        return "pass" if met else "MISSED"


def set_out(path: Path) -> None:
    global OUT
    OUT = path.resolve()


def parse(line: str, engine: str) -> Result | None:
    match = LINE.match(line.strip())
    if not match:
        return None
    fields: dict[str, str] = {}
    checks: dict[str, bool] = {}
    for token in match["fields"].split():
        key, _, value = token.partition("=")
        if key.startswith("check:"):
            checks[key.removeprefix("check:")] = value == "pass"
        else:
            fields[key] = value
    return Result(engine, match["name"], fields, match["note"] or "", checks)


def machine() -> str:
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{os.cpu_count()} cores{memory}, {system}, Python {platform.python_version()}"


def postgres_reachable(server: str) -> bool:
    try:
        import psycopg

        psycopg.connect(f"{server}/postgres", connect_timeout=3).close()
    except Exception:
        return False
    return True


def ensure_database(server: str, name: str, *, fresh: bool = False) -> str:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        if fresh:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def urls(engine: str, server: str, only: list[str], prefix: str = "deploysafe") -> dict[str, str]:
    """{role: database URL}; on PostgreSQL, the databases the chosen benchmarks use are created (named
    with `prefix` instead of "deploysafe"), and the others not touched."""
    if engine == "sqlite":
        OUT.mkdir(parents=True, exist_ok=True)
        return {role: f"sqlite:///{OUT / f'sqlite-{role}.sqlite3'}" for role in PG_DATABASES}
    used = {role for name in only for role in ROLES[name]}
    return {
        role: ensure_database(server, name.replace("deploysafe", prefix, 1), fresh=role == "deploy_mode")
        if role in used
        else ""
        for role, name in PG_DATABASES.items()
    }


def commands(
    engine: str, rows: int, db: dict[str, str], only: list[str]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    python, here = sys.executable, ROOT / "benchmarks"
    # The admin benchmark reuses the data the integrity benchmark generated (and publishes
    # into it afterwards); run alone, it generates its own. So does the public one.
    reuse = ["--skip-generate"] if "integrity" in only else []
    reuse_public = ["--skip-generate"] if {"integrity", "admin"} & set(only) else []
    if engine == "sqlite":
        # The deploy-mode benchmark makes a fresh user: start from an empty file every time.
        Path(db["deploy_mode"].removeprefix("sqlite:///")).unlink(missing_ok=True)
    return {
        "integrity": (
            [python, str(here / "bench_integrity.py"), "--rows", str(rows)],
            {"DATABASE_URL": db["data"]},
        ),
        "admin": (
            [python, str(here / "bench_admin.py"), "--rows", str(rows), *reuse],
            {"DATABASE_URL": db["data"], "BENCH_SMALL_DATABASE_URL": db["small"]},
        ),
        # The operations pages read the same data: generated by the integrity benchmark when it runs.
        "operations": (
            [python, str(here / "bench_operations.py"), "--rows", str(rows), *reuse],
            {"DATABASE_URL": db["data"]},
        ),
        "deploy_mode": (
            [python, str(here / "bench_deploy_mode.py")],
            {"BENCH_DATABASE_URL": db["deploy_mode"]},
        ),
        "deploy_safe": (
            [python, str(here / "bench_deploy_safe.py")],
            {"DATABASE_URL": db["deploy_safe"], "BENCH_ROWS": str(rows)},
        ),
        "audit_write_paths": ([python, str(here / "bench_audit_write_paths.py")], {}),
        "jobs": ([python, str(here / "bench_jobs.py")], {"BENCH_DATABASE_URL": db["jobs"]}),
        "public": (
            [python, str(here / "bench_public.py"), "--rows", str(rows), *reuse_public],
            {"DATABASE_URL": db["data"], "BENCH_SMALL_DATABASE_URL": db["small"]},
        ),
    }


def run_one(command: list[str], env: dict[str, str]) -> tuple[int, list[str], float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "DJANGO_ENV": "test", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        if QUIET in line:
            continue
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    return process.wait(), lines, time.perf_counter() - started


KEPT = ("BENCH ", "generated ", "Generated ", "database=", "audit_write_paths ")


def read_sections(path: Path) -> dict[str, list[str]]:
    """{benchmark: its lines} from a var/bench/<engine>.txt, each section headed `## <name> …`."""
    sections: dict[str, list[str]] = {}
    if path.exists():
        current = None
        for line in path.read_text().splitlines():
            if line.startswith("## "):
                current = line.split()[1]
                sections[current] = []
            if current is not None:
                sections[current].append(line)
    return sections


def write_sections(path: Path, engine: str, sections: dict[str, list[str]]) -> None:
    order = sorted(sections, key=lambda name: BENCHMARKS.index(name) if name in BENCHMARKS else 99)
    text = [f"# engine={engine} machine={machine()}"]
    for name in order:
        text += sections[name]
    path.write_text("\n".join(text) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", "1000000")))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument(
        "--pg-prefix",
        default=os.environ.get("BENCH_PG_PREFIX", "deploysafe"),
        help='PostgreSQL databases are named <prefix>_int, <prefix>_bench_small, ... (default "deploysafe")',
    )
    parser.add_argument("--table", action="store_true", help="print RESULTS.md tables from var/bench/*.txt")
    parser.add_argument("--out", type=Path, default=OUT, help="where the <engine>.txt files go")
    args = parser.parse_args()
    set_out(args.out)
    if args.table:
        print_tables()
        return
    only = [b for b in args.only.split(",") if b] or list(BENCHMARKS)
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        sys.exit(f"Unknown benchmark(s) {', '.join(sorted(unknown))}: choose from {', '.join(BENCHMARKS)}.")
    results: list[Result] = []
    failures: list[str] = []
    skipped: list[str] = []
    overall = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    for engine in args.engines.split(","):
        if engine == "postgresql" and not postgres_reachable(args.pg_url):
            skipped.append(f"PostgreSQL at {args.pg_url} is unreachable: SKIPPED its benchmarks.")
            print(f"\n!!! {skipped[-1]} !!!\n", flush=True)
            continue
        db = urls(engine, args.pg_url, only, args.pg_prefix)
        path = OUT / f"{engine}.txt"
        # A run of some benchmarks replaces their sections and keeps the others'.
        sections = read_sections(path) if args.only else {}
        for name, (command, env) in commands(engine, args.rows, db, only).items():
            # The write-path audit reads files, not a database: once is enough.
            if name not in only or (name == "audit_write_paths" and engine != args.engines.split(",")[0]):
                continue
            print(f"\n=== {name} on {engine}, {args.rows} rows ===", flush=True)
            now = datetime.datetime.now(datetime.UTC)
            code, lines, took = run_one(command, env)
            sections[name] = [
                f"## {name} rows={args.rows} date={now:%Y-%m-%d %H:%M}Z took={took:.0f}s exit={code}",
                *(line for line in lines if line.startswith(KEPT)),
            ]
            write_sections(path, engine, sections)
            for line in lines:
                result = parse(line, engine)
                if result:
                    results.append(result)
            # bench_admin.py exits 1 for a missed goal; a traceback, an exit status above 1 (a
            # command the benchmark ran failed) or no line at all is a failure.
            crashed = any(line.startswith("Traceback") for line in lines) or code > 1
            if crashed or not any(parse(line, engine) for line in lines):
                failures.append(f"{name} on {engine} exited {code}: see its output above")
    summary(results, failures, skipped, time.perf_counter() - overall, args.rows)
    sys.exit(1 if failures or any(r.status == "MISSED" for r in results) else 0)


def summary(results: list[Result], failures: list[str], skipped: list[str], took: float, rows: int) -> None:
    print(f"\n=== Summary: {rows} rows, {took:.0f}s, {machine()} ===")
    for result in results:
        goal = "none" if result.goal is None else f"{result.goal:g}"
        checks = " ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in result.checks.items())
        print(
            f"{result.status:6}  {result.engine:10}  {result.name:28} ratio={result.ratio:<8.3f} "
            f"goal<={goal:5} {checks}"
        )
    missed = [r for r in results if r.status == "MISSED"]
    for line in failures + skipped:
        print(f"!!! {line}")
    passed = sum(r.status == "pass" for r in results)
    print(
        f"{passed} goals met, {len(missed)} missed, {len(failures)} benchmarks failed"
        + (f": MISSED {', '.join(f'{r.name} ({r.engine})' for r in missed)}" if missed else "")
        + f". Lines in {OUT}/<engine>.txt."
    )


def print_tables() -> None:
    for path in sorted(OUT.glob("*.txt")):
        engine = path.stem
        sections = read_sections(path)
        print(f"\n### {engine}\n")
        print("| benchmark | ours (s) | baseline (s) | ratio | goal | result | details |")
        print("|---|---|---|---|---|---|---|")
        for lines in sections.values():
            for line in lines:
                result = parse(line, engine)
                if result is None:
                    continue
                details = " ".join(
                    f"{k}={v}"
                    for k, v in result.fields.items()
                    if k not in ("ours", "baseline", "ratio", "goal<")
                )
                checks = " ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in result.checks.items())
                ours, baseline = result.fields["ours"], result.fields["baseline"]
                goal = "—" if result.goal is None else f"≤ {result.goal:g}"
                print(
                    f"| {result.name} | {ours} | {baseline} | {result.ratio:.2f} | {goal} | {result.status} "
                    f"| {' '.join(filter(None, [details, checks]))} |"
                )
        print()
        for lines in sections.values():
            print(f"- {lines[0].removeprefix('## ')}")


if __name__ == "__main__":
    main()
