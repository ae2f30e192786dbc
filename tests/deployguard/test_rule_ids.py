"""Rule ids as people write them: short ids when one app uses them, and a "did you mean"."""

from __future__ import annotations

import json

import pytest
from django.db.models import Q

from deployguard.integrity import IntegrityError, IntegrityRegistry, Rule
from documents.models import PublishedDraft, Submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command


def _rule(rule_id: str, model=Submission) -> Rule:
    return Rule(id=rule_id, severity="error", model=model, description=rule_id, condition=lambda: Q(pk=None))


@pytest.fixture
def registry() -> IntegrityRegistry:
    registry = IntegrityRegistry()
    registry.register(_rule("documents.E007"), _rule("documents.E020"), _rule("audit.E020", PublishedDraft))
    return registry


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("documents.E007", "documents.E007"),
        ("E007", "documents.E007"),
        ("e007", "documents.E007"),
        (" Documents.e007 ", "documents.E007"),
        ("audit.E020", "audit.E020"),
    ],
)
def test_a_rule_id_is_read_in_any_case_and_short_when_one_app_uses_it(registry, written, meant):
    assert registry.rule_id(written) == meant


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("E020", "Rule id E020 is ambiguous (audit.E020, documents.E020): give the full id."),
        (
            "E07",
            "Unknown rule id E07. Did you mean documents.E007? "
            "`manage.py verify_integrity --list-rules` shows the known ones.",
        ),
        ("nope", "Unknown rule id nope. `manage.py verify_integrity --list-rules` shows the known ones."),
    ],
)
def test_an_ambiguous_or_unknown_rule_id_is_refused_with_the_nearest_ids(registry, written, message):
    with pytest.raises(IntegrityError) as refused:
        registry.rule_id(written)
    assert str(refused.value) == message


def test_verify_integrity_runs_a_rule_given_by_its_short_id(db):
    published_draft(title="Interoperable widgets")
    fake = SubmissionFactory(submitted_by="Test User")
    stdout, stderr, status = run_command("verify_integrity", "--rule", "E007", "--format", "json")
    assert status == 1, stderr
    [rule] = json.loads(stdout)["rules"]
    assert (rule["id"], rule["sample_pks"]) == ("documents.E007", [fake.pk])
    assert run_command("verify_integrity", "--silence", "e007")[2] == 0


def test_settings_may_silence_a_rule_by_its_short_id(db, settings):
    published_draft(title="Interoperable widgets")
    SubmissionFactory(submitted_by="Test User")
    settings.DEPLOYGUARD_SILENCED_RULES = ["E007", "no.such.rule"]
    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")
    assert status == 0
    assert json.loads(stdout)["silenced"] == ["documents.E007"]


def test_verify_integrity_suggests_the_rule_an_unknown_id_was_probably_meant_to_be(db):
    stdout, stderr, status = run_command("verify_integrity", "--rule", "documents.E0077")
    assert (stdout, status) == ("", 2)
    assert stderr == (
        "CommandError: Unknown rule id documents.E0077. Did you mean documents.E007 or documents.E020 or "
        "documents.E010? `manage.py verify_integrity --list-rules` shows the known ones.\n"
    )
