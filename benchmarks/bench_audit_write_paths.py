"""Benchmark: the write-path audit on 2,000 generated modules, against a bare `ast.parse` of them.

    DJANGO_ENV=test .venv/bin/python benchmarks/bench_audit_write_paths.py [--modules 2000]

Prints `BENCH audit_write_paths_2000 ours=<s> baseline=<s> ratio=<x> goal<=none ...` (medians
of --repeat runs, alternating; no issue sets a goal, so the line is informational), the same
for this repository, and the wall time of the command with Django's start-up.
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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from benchmarks.common import compare, report
    from deployguard.write_paths import audit, config_from_settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.modules)
        config = config_from_settings(root)
        found = audit(config)
        ours, baseline = compare(lambda: audit(config), lambda: bare_parse(root), args.repeat)
        report(
            f"audit_write_paths_{args.modules}",
            ours,
            baseline,
            None,
            extra={
                "files": found.files_scanned,
                "writes": len(found.writes),
                "entry_points": len(found.entry_points),
                "violations": len(found.violations),
            },
            note="baseline: bare ast.parse of the same files",
        )

    config = config_from_settings()
    found = audit(config)
    ours, baseline = compare(lambda: audit(config), lambda: bare_parse_files(config), args.repeat)
    report(
        "audit_write_paths_repo",
        ours,
        baseline,
        None,
        extra={"files": found.files_scanned},
        note="baseline: bare ast.parse of the same files",
    )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "audit_write_paths", "--verbosity", "0"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"audit_write_paths command wall time {time.perf_counter() - started:.3f}s (Django start-up included)"
    )


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
