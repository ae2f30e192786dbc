"""Benchmark: the write-path audit on 2,000 generated modules, against a bare `ast.parse` of them.

    DJANGO_ENV=test .venv/bin/python benchmarks/bench_audit_write_paths.py [--modules 2000]

Prints one line: `BENCH audit_write_paths_2000 ours=<s> baseline=<s> ratio=<x> ...` (best of
three runs each), then the same for this repository, and the wall time of the command.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_ENV", "test")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

MODULE = '''"""Generated module {n}."""

from django.db import connection, transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from documents.models import PublishedDraft as Draft, Submission


class Helper{n}:
    def __init__(self, limit: int) -> None:
        self.limit = limit

    def recent(self):
        return Submission.objects.filter(status="approved").order_by("-pk")[: self.limit]

    def count(self) -> int:
        return Draft.objects.filter(status="published").count()

    def titles(self) -> list[str]:
        return [s.title for s in Submission.objects.all() if s.title]


def report_{n}(rows: list[dict]) -> dict[str, int]:
    totals: dict[str, int] = {{}}
    for row in rows:
        totals[row["status"]] = totals.get(row["status"], 0) + 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM documents_submission WHERE status = %s", ["approved"])
        totals["db"] = cursor.fetchone()[0]
    return totals


def touch_{n}(pk: int) -> None:
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=pk)
        submission.title = submission.title.strip()
        {write}


@receiver(post_save, sender=Submission)
def on_save_{n}(sender, instance, created, **kwargs):
    if created and instance.pk % {m} == 0:
        return None
    return instance.pk
'''
WRITES = ("submission.save()", "pass", "pass", "Draft.objects.filter(pk=pk).update(status='x')", "pass")


def generate(root: Path, modules: int) -> list[Path]:
    files = []
    per_app = 100
    for n in range(modules):
        app = root / f"app{n // per_app:02d}"
        if not app.exists():
            app.mkdir()
            (app / "__init__.py").write_text("")
        path = app / f"module{n:04d}.py"
        path.write_text(MODULE.format(n=n, m=n % 7 + 2, write=WRITES[n % len(WRITES)]))
        files.append(path)
    return files


def best_of(runs: int, function) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def bare_parse(root: Path) -> int:
    count = 0
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(".py"):
                ast.parse(Path(directory, name).read_text(encoding="utf-8"))
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=2000)
    args = parser.parse_args()

    import django

    django.setup()
    from deployguard.write_paths import audit, config_from_settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.modules)
        config = config_from_settings(root)
        ours, report = best_of(3, lambda: audit(config))
        baseline, parsed = best_of(3, lambda: bare_parse(root))
        print(
            f"BENCH audit_write_paths_{args.modules} ours={ours:.3f}s baseline_ast_parse={baseline:.3f}s "
            f"ratio={ours / baseline:.2f} files={report.files_scanned} parsed={parsed} "
            f"writes={len(report.writes)} entry_points={len(report.entry_points)} "
            f"violations={len(report.violations)}"
        )

    config = config_from_settings()
    ours, report = best_of(3, lambda: audit(config))
    baseline, parsed = best_of(3, lambda: bare_parse_files(config))
    print(
        f"BENCH audit_write_paths_repo ours={ours:.3f}s baseline_ast_parse={baseline:.3f}s "
        f"ratio={ours / baseline:.2f} files={report.files_scanned}"
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "audit_write_paths", "--verbosity", "0"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    print(f"BENCH audit_write_paths_command_wall={wall:.3f}s (Django start-up included)")


def bare_parse_files(config) -> int:
    from deployguard.write_paths.scanner import iter_source_files

    count = 0
    for path, rel in iter_source_files(config.root, config.exclude):
        if rel.endswith(".py"):
            ast.parse(path.read_text(encoding="utf-8"))
            count += 1
    return count


if __name__ == "__main__":
    main()
