"""Run every registered integrity rule; optionally save or compare a baseline of the tables."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connection, models

from deployguard import baseline, row_counts
from deployguard.history_diff import Difference, differences
from deployguard.integrity import (
    DEFAULT_SAMPLE_SIZE,
    SEVERITIES,
    IntegrityError,
    RuleResult,
    default_registry,
    describe_origin,
    evaluate,
    fails_at,
)
from deployguard.management.commands._integrity import EXIT_VIOLATIONS, IntegrityCommand, misuse

HELP = """Check that the database holds only legitimate data: run every integrity rule the apps
register (one pass per table), print each rule's count of offending rows with a sample of
their primary keys and where they came from. It also keeps the last known row count of every
checked table: a table holding fewer rows than recorded, with no purge to account for them,
fails as deployguard.E101 (--accept-row-counts records the counts as they are).
--save-baseline writes counts, fingerprints and row hashes; --baseline compares the database
with such a file and lists added, removed and changed rows by primary key.

Exit status: 0 clean; 1 a rule at or above --fail-level has offending rows, or the data
differs from --baseline; 2 misuse (bad arguments, unknown rule id, unreadable baseline)."""


TABLE_ORIGINS = 5
VIOLATIONS_FOUND = (
    "Integrity violations found (see above); `manage.py scrub_fake_data` shows what it would quarantine."
)


Changed = dict[type[models.Model], dict[Any, list[Difference]]]


def _changed_without_record(results: list[RuleResult]) -> Changed:
    """For the sampled rows of failed rules, the fields that differ from their latest history record."""
    sampled: dict[type[models.Model], set[Any]] = {}
    for result in results:
        if result.failed and result.sample_pks:
            sampled.setdefault(result.rule.model, set()).update(result.sample_pks)
    return {model: differences(model, list(pks)) for model, pks in sampled.items()}


class Command(IntegrityCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=("table", "json"), default="table", help="Output format.")
        parser.add_argument(
            "--fail-level",
            choices=SEVERITIES,
            default="error",
            help="Lowest severity that makes the exit status 1 (default: error).",
        )
        parser.add_argument("--rule", action="append", default=[], metavar="ID", help="Run only this rule.")
        parser.add_argument(
            "--silence", action="append", default=[], metavar="ID", help="Skip this rule (also by settings)."
        )
        parser.add_argument(
            "--sample",
            type=int,
            default=DEFAULT_SAMPLE_SIZE,
            metavar="N",
            help=f"Primary keys listed per rule (default {DEFAULT_SAMPLE_SIZE}).",
        )
        parser.add_argument("--save-baseline", metavar="FILE", help="Write a baseline of the checked tables.")
        parser.add_argument("--baseline", metavar="FILE", help="Compare the tables with this baseline.")
        parser.add_argument("--list-rules", action="store_true", help="List the registered rules and exit.")
        parser.add_argument(
            "--accept-row-counts",
            action="store_true",
            help=f"Record the checked tables' row counts as they are, once a loss "
            f"({row_counts.LOST_ROWS_ID}) is explained.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["sample"] < 0:
            raise misuse("--sample must be 0 or more.")
        if options["list_rules"]:
            self._list_rules()
            return
        try:
            rules = default_registry.select(only=options["rule"], silence=options["silence"])
        except IntegrityError as error:
            raise misuse(str(error)) from None
        started = time.perf_counter()
        comparison = None
        if options["baseline"]:
            try:
                comparison = baseline.compare(options["baseline"], default_registry.models())
            except baseline.BaselineError as error:
                raise misuse(str(error)) from None
        results = evaluate(rules, sample_size=options["sample"], with_origins=True)
        changed = _changed_without_record(results)
        if options["accept_row_counts"]:
            row_counts.record()
        if not options["rule"]:
            lost, grown = row_counts.check()
            results += lost
            if grown and not lost:
                row_counts.record()  # the last known counts: a later loss is measured from here
        if options["save_baseline"]:
            try:
                baseline.save(options["save_baseline"], default_registry.models())
            except baseline.BaselineError as error:
                raise misuse(str(error)) from None
        duration = time.perf_counter() - started
        failed = any(fails_at(result, options["fail_level"]) for result in results)
        failed = failed or (comparison is not None and not comparison.ok)
        chosen = options["rule"] or list(default_registry.rules)
        silenced = sorted(set(chosen) - {rule.id for rule in rules})
        if options["format"] == "json":
            self._json(results, comparison, options, duration, silenced, changed, ok=not failed)
        else:
            self._table(results, comparison, options, duration, silenced, changed, ok=not failed)
        if options["save_baseline"] and options["verbosity"] >= 1 and options["format"] == "table":
            self.stdout.write(f"Baseline saved to {options['save_baseline']}.")
        if failed:
            raise CommandError(
                VIOLATIONS_FOUND,
                returncode=EXIT_VIOLATIONS,
            )

    def _list_rules(self) -> None:
        for rule in default_registry.rules.values():
            self.stdout.write(f"{rule.id}  {rule.severity:<7}  {rule.model_label:<26}  {rule.description}")

    def _json(
        self,
        results: list[RuleResult],
        comparison: baseline.Comparison | None,
        options: dict[str, Any],
        duration: float,
        silenced: list[str],
        changed: Changed,
        *,
        ok: bool,
    ) -> None:
        document = {
            "ok": ok,
            "fail_level": options["fail_level"],
            "database": connection.vendor,
            "duration_s": round(duration, 4),
            "silenced": silenced,
            "rules": [
                {
                    "id": result.rule.id,
                    "severity": result.rule.severity,
                    "model": result.rule.model_label,
                    "description": result.rule.description,
                    "count": result.count,
                    "sample_pks": result.sample_pks,
                    "samples": [
                        {
                            "pk": pk,
                            **result.origins[pk],
                            "differs": [
                                {"field": d.field, "recorded": d.recorded, "now": d.now}
                                for d in changed.get(result.rule.model, {}).get(pk, [])
                            ],
                        }
                        for pk in result.sample_pks
                    ],
                    "duration_s": round(result.duration, 4),
                }
                for result in results
            ],
            "baseline": comparison.as_dict() if comparison else None,
        }
        self.stdout.write(json.dumps(document, indent=2, default=str))

    def _table(
        self,
        results: list[RuleResult],
        comparison: baseline.Comparison | None,
        options: dict[str, Any],
        duration: float,
        silenced: list[str],
        changed: Changed,
        *,
        ok: bool,
    ) -> None:
        verbosity = options["verbosity"]
        out = self.stdout
        shown = results if verbosity >= 2 else [r for r in results if r.failed] or []
        if shown:
            out.write(f"{'RULE':<16}{'SEVERITY':<10}{'COUNT':>8}  {'SAMPLE PKS':<24} DESCRIPTION")
            for result in shown:
                sample = ", ".join(str(pk) for pk in result.sample_pks[:5])
                if result.count > len(result.sample_pks[:5]):
                    sample += ", …" if sample else "…"
                line = (
                    f"{result.rule.id:<16}{result.rule.severity:<10}{result.count:>8}  {sample or '-':<24} "
                    f"{result.rule.model_label}: {result.rule.description}"
                )
                style = self.style.ERROR if result.rule.severity == "error" else self.style.WARNING
                out.write(style(line) if result.failed else line)
        if verbosity >= 1:
            for result in results:
                if not result.failed or not result.origins:
                    continue
                out.write(f"\n{result.rule.id} ({result.rule.model_label}), where the rows came from:")
                listed = result.sample_pks if verbosity >= 2 else result.sample_pks[:TABLE_ORIGINS]
                for pk in listed:
                    out.write(f"  {pk}: {describe_origin(result.origins[pk])}")
                    for difference in changed.get(result.rule.model, {}).get(pk, []):
                        out.write(f"    changed without a record: {difference}")
                if len(listed) < result.count:
                    out.write(f"  … {result.count - len(listed)} more (--format json or -v 2 lists more)")
        if comparison is not None:
            out.write(f"\nBaseline {comparison.path} (saved {comparison.created_at}):")
            for table in comparison.tables:
                if table.equal:
                    out.write(f"  {table.label}: unchanged ({table.count_now} rows, {table.fingerprint_now})")
                    continue
                out.write(
                    self.style.ERROR(f"  {table.label}: {table.count_then} rows then, {table.count_now} now")
                )
                for kind in ("added", "removed", "changed"):
                    listed: baseline.PkList = getattr(table, kind)
                    if listed.count:
                        pks = ", ".join(str(pk) for pk in listed.pks[: max(options["sample"], 1)])
                        more = ", …" if listed.count > max(options["sample"], 1) else ""
                        out.write(f"    {kind} {listed.count}: {pks}{more}")
            for label in comparison.untracked:
                out.write(self.style.WARNING(f"  {label}: in only one of baseline and rules; not compared"))
        if silenced and verbosity >= 1:
            out.write(f"\nSilenced: {', '.join(silenced)}")
        broken = [r for r in results if r.failed]
        summary = (
            f"\n{len(results)} rules checked in {duration:.2f}s: "
            f"{sum(r.rule.severity == 'error' for r in broken)} errors, "
            f"{sum(r.rule.severity == 'warning' for r in broken)} warnings broken"
            f" (fail level {options['fail_level']})."
        )
        out.write(self.style.SUCCESS(summary) if ok else self.style.ERROR(summary))
