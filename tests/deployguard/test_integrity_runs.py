"""Integrity counts kept for the operations pages: record() counts every rule, latest() reads them back."""

from __future__ import annotations

import pytest

from deployguard import integrity_runs
from deployguard.integrity import default_registry, evaluate
from deployguard.models_operations import IntegrityRun
from tests.documents.fakes import raw_insert_submission
from tests.factories import SubmissionFactory

pytestmark = pytest.mark.django_db


def test_record_stores_the_count_of_every_rule_as_evaluate_counts_them(superuser):
    SubmissionFactory(actor=superuser)
    raw_insert_submission("ML-901", submitted_by="Test User")

    run = integrity_runs.record(computed_by="pytest")

    expected = {result.rule.id: result.count for result in evaluate(default_registry.select())}
    assert run.counts == expected
    assert run.counts["documents.E007"] == 1
    assert run.computed_by == "pytest"
    assert run.origin.startswith(("command:", "process:"))
    assert IntegrityRun.objects.count() == 1


def test_record_skips_silenced_rules(settings):
    settings.DEPLOYGUARD_SILENCED_RULES = ["documents.E007"]

    run = integrity_runs.record(computed_by="pytest")

    assert "documents.E007" not in run.counts
    assert "documents.E001" in run.counts


def test_latest_is_the_most_recent_run_and_none_before_any():
    assert integrity_runs.latest() is None
    integrity_runs.record(computed_by="first")
    second = integrity_runs.record(computed_by="second")

    assert integrity_runs.latest() == second


def test_recording_works_in_deploy_mode_because_it_writes_only_deployguard_s_table(deploy_mode_on):
    run = integrity_runs.record(computed_by="during the deploy")

    assert IntegrityRun.objects.filter(pk=run.pk).exists()
