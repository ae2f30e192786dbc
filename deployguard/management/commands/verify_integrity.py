"""Run every registered integrity rule; optionally save or compare a baseline of the tables."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import CommandParser
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
from deployguard.natural_keys import natural_keys
from deployguard.terminal import Progress, printable

HELP = """Check that the database holds only legitimate data: run every integrity rule the apps
register (one pass per table), print each rule's count of offending rows with a sample of
their primary keys (and natural keys, such as ML numbers) and where they came from. It also
keeps the last known row count of every checked table: a table holding fewer rows than
recorded, with no purge to account for them, fails as deployguard.E101 (--accept-row-counts
records the counts as they are). --save-baseline writes counts, fingerprints and row hashes;
--baseline compares the database with such a file and lists added, removed and changed rows
by primary key. Shows progress on a terminal (stderr); nothing when piped or with --verbosity 0.

Exit status: 0 clean; 1 a rule at or above --fail-level has offending rows, or the data
differs from --baseline; 2 misuse (bad arguments, unknown or ambiguous rule id, unreadable
baseline: a FIFO, device or directory, too large, or not a baseline, refused before it is
read). Rule ids may be short (E007) when only one app registers them."""


TABLE_ORIGINS = 5
VIOLATIONS_FOUND = (
    "Integrity violations found (see above); `manage.py scrub_fake_data` shows what it would quarantine."
)


def sample_keys(results: list[RuleResult]) -> dict[str, dict[Any, str]]:
    """{model label: {pk: natural key}} for every sampled row: one query per model sampled."""
    sampled: dict[Any, set[Any]] = {}
    for result in results:
        sampled.setdefault(result.rule.model, set()).update(result.sample_pks)
    return {model._meta.label_lower: natural_keys(model, pks) for model, pks in sampled.items()}


def row_name(pk: Any, keys: dict[Any, str]) -> str:
    """ "3 (ML-003)", or "3" when the model declares no natural key."""
    return printable(f"{pk} ({keys[pk]})" if pk in keys else pk)


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
        parser.add_argument(
            "--rule",
            action="append",
            default=[],
            metavar="ID",
            help="Run only this rule (documents.E007, or E007 when one app uses it).",
        )
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
        tables = len({rule.model for rule in rules})
        with Progress.for_command(
            self, options["verbosity"], what="verify_integrity", total=tables
        ) as progress:
            if options["baseline"]:
                progress.set_phase("comparing with the baseline")
                try:
                    comparison = baseline.compare(options["baseline"], default_registry.models())
                except baseline.BaselineError as error:
                    raise misuse(str(error)) from None
            progress.set_phase("checking rules")
            results = evaluate(
                rules,
                sample_size=options["sample"],
                with_origins=True,
                on_table=lambda _model: progress.advance(),
            )
            changed = _changed_without_record(results)
            if options["accept_row_counts"]:
                row_counts.record()
            if not options["rule"]:
                lost, grown = row_counts.check()
                results += lost
                if grown and not lost:
                    row_counts.record()  # the last known counts: a later loss is measured from here
            keys = sample_keys(results)
            if options["save_baseline"]:
                progress.set_phase("saving the baseline")
                try:
                    baseline.save(options["save_baseline"], default_registry.models())
                except baseline.BaselineError as error:
                    raise misuse(str(error)) from None
        duration = time.perf_counter() - started
        failed = any(fails_at(result, options["fail_level"]) for result in results)
        failed = failed or (comparison is not None and not comparison.ok)
        chosen = {default_registry.rule_id(written) for written in options["rule"]}
        chosen = chosen or set(default_registry.rules)
        silenced = sorted(chosen - {rule.id for rule in rules})
        if options["format"] == "json":
            self._json(results, keys, comparison, options, duration, silenced, changed, ok=not failed)
        else:
            self._table(results, keys, comparison, options, duration, silenced, changed, ok=not failed)
        if options["save_baseline"] and options["verbosity"] >= 1 and options["format"] == "table":
            self.stdout.write(f"Baseline saved to {printable(options['save_baseline'])}.")
        if failed:
            if options["format"] == "table" and options["verbosity"] >= 1:
                self.stdout.write(VIOLATIONS_FOUND)
            # A finding, not a failure of the command: said on stdout, told by the exit status.
            raise SystemExit(EXIT_VIOLATIONS)

    def _list_rules(self) -> None:
        for rule in default_registry.rules.values():
            self.stdout.write(f"{rule.id}  {rule.severity:<7}  {rule.model_label:<26}  {rule.description}")

    def _json(
        self,
        results: list[RuleResult],
        keys: dict[str, dict[Any, str]],
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
                            "natural_key": keys.get(result.rule.model_label, {}).get(pk),
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
        keys: dict[str, dict[Any, str]],
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
            out.write(f"{'RULE':<16}{'SEVERITY':<10}{'COUNT':>8}  {'SAMPLE PK (KEY)':<24} DESCRIPTION")
            for result in shown:
                named = keys.get(result.rule.model_label, {})
                sample = ", ".join(row_name(pk, named) for pk in result.sample_pks[:5])
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
                named = keys.get(result.rule.model_label, {})
                for pk in listed:
                    out.write(f"  {row_name(pk, named)}: {printable(describe_origin(result.origins[pk]))}")
                    for difference in changed.get(result.rule.model, {}).get(pk, []):
                        out.write(printable(f"    changed without a record: {difference}"))
                if len(listed) < result.count:
                    out.write(f"  … {result.count - len(listed)} more (--format json or -v 2 lists more)")
        if comparison is not None:
            out.write(f"\nBaseline {printable(comparison.path)} (saved {printable(comparison.created_at)}):")
            for table in comparison.tables:
                if table.equal:
                    out.write(
                        f"  {printable(table.label)}: unchanged ({table.count_now} rows, "
                        f"{printable(table.fingerprint_now)})"
                    )
                    continue
                out.write(
                    self.style.ERROR(
                        f"  {printable(table.label)}: {printable(table.count_then)} rows then, "
                        f"{table.count_now} now"
                    )
                )
                for kind in ("added", "removed", "changed"):
                    listed: baseline.PkList = getattr(table, kind)
                    if listed.count:
                        pks = printable(", ".join(str(pk) for pk in listed.pks[: max(options["sample"], 1)]))
                        more = ", …" if listed.count > max(options["sample"], 1) else ""
                        out.write(f"    {kind} {listed.count}: {pks}{more}")
            for label in comparison.untracked:
                out.write(
                    self.style.WARNING(
                        f"  {printable(label)}: in only one of baseline and rules; not compared"
                    )
                )
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
