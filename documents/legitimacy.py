"""Whether submissions are legitimate production data: the error-level rules each one breaks.

The services refuse to approve, publish or save a submission that breaks any error-level
integrity rule (quarantined, not production, test content, changed without a record, ...),
and the admin lists the same verdicts on its confirmation pages before anyone confirms.
One query for any number of rows: each rule is a boolean column of one SELECT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper

from deployguard.integrity import Rule, default_registry
from documents.models import Submission

EXPLAIN = "see `manage.py explain_row documents.submission {pk}`"
# What to do about a submission that breaks a rule, by rule id; EXPLAIN when not listed.
WHAT_TO_DO = {
    "documents.E001": "correct the ML number to ML-<digits>, or reject the submission",
    "documents.E003": "the status was written around the services: " + EXPLAIN,
    "documents.E005": (
        "it is not production data (quarantined, seed, test or import): if it is genuine, restore it "
        "with `manage.py scrub_fake_data --restore RUN`; otherwise reject it"
    ),
    "documents.E007": (
        "test data is never published: reject it, or, if it is genuine, edit the submitter and title "
        "so that they hold no test name or word (DOCUMENTS_TEST_SUBMITTERS, DOCUMENTS_TEST_WORDS)"
    ),
    "documents.E011": "it is marked published without a draft: " + EXPLAIN,
    "documents.E020": "it was not created through the services (no creation record): " + EXPLAIN,
    "documents.E022": (
        "it was changed without a record (SQL around the services): `manage.py scrub_fake_data --apply "
        "--repair documents.E022` restores the recorded values; " + EXPLAIN + " shows which"
    ),
}


@dataclass(frozen=True)
class Breach:
    """One error-level rule a row breaks, with what to do about it."""

    rule_id: str
    description: str
    what_to_do: str

    def __str__(self) -> str:
        return f"{self.rule_id} ({self.description}): {self.what_to_do}"


def submission_rules() -> list[Rule]:
    """The error-level rules on submissions that are not silenced."""
    return [
        rule for rule in default_registry.select() if rule.model is Submission and rule.severity == "error"
    ]


def breaches(pks: Iterable[Any]) -> dict[Any, list[Breach]]:
    """{pk: the rules it breaks} for the submissions `pks` that break any, quarantined or not: one query."""
    pks = list(pks)
    rules = submission_rules()
    if not pks or not rules:
        return {}
    flags = {
        f"rule_{i}": ExpressionWrapper(rule.condition(), output_field=BooleanField())
        for i, rule in enumerate(rules)
    }
    rows = Submission._base_manager.filter(pk__in=pks).annotate(**flags).values("pk", *flags)
    found: dict[Any, list[Breach]] = {}
    for row in rows:
        broken = [
            Breach(rule.id, rule.description, WHAT_TO_DO.get(rule.id, EXPLAIN).format(pk=row["pk"]))
            for i, rule in enumerate(rules)
            if row[f"rule_{i}"]
        ]
        if broken:
            found[row["pk"]] = broken
    return found


def describe(broken: list[Breach]) -> str:
    """One line for a refusal or a confirmation page: every rule, its description and what to do."""
    return "; ".join(str(breach) for breach in broken)
