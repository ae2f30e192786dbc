"""The incident replayed: one legitimate document, then fakes made the ways the incident made them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from deployguard.fingerprint import fingerprint_table
from deployguard.models_integrity import ScrubRun
from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.fakes import (
    raw_insert_draft,
    raw_insert_submission,
    raw_update_submission,
    script_publishes_without_user,
)
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command

TABLES = (Submission, PublishedDraft, Submission.history.model, PublishedDraft.history.model)


def fingerprints(*tables):
    tables = tables or TABLES
    return [fingerprint_table(table) for table in tables]


@dataclass
class Incident:
    legitimate: dict[type, set[int]] = field(default_factory=dict)
    fakes: dict[type, set[int]] = field(default_factory=dict)


@pytest.fixture
def incident(db, superuser) -> Incident:
    draft = published_draft(title="Interoperable widgets", submitted_by="Grace Hopper")
    contest = SubmissionFactory(title="Results of the 2024 protocol contest")
    legitimate = {Submission: {draft.submission_id, contest.pk}, PublishedDraft: {draft.pk}}

    by_script = script_publishes_without_user("ML-901", published_by=superuser, name="rfc901")
    raw_submission = raw_insert_submission("ML-902", status="published", approved_by_id=superuser.pk)
    raw_draft = raw_insert_draft("rfc902", submission_id=raw_submission, published_by_id=superuser.pk)
    flipped = SubmissionFactory(status=Submission.Status.APPROVED)
    raw_update_submission(flipped.pk, status=Submission.Status.PUBLISHED)
    test_user = SubmissionFactory(submitted_by="Test User")
    anonymous = SubmissionFactory(submitted_by="Anonymous User")
    lorem = published_draft(title="Lorem ipsum sample")
    fakes = {
        Submission: {
            by_script.submission_id,
            raw_submission,
            flipped.pk,
            test_user.pk,
            anonymous.pk,
            lorem.submission_id,
        },
        PublishedDraft: {by_script.pk, raw_draft, lorem.pk},
    }
    return Incident(legitimate=legitimate, fakes=fakes)


def named_in(report: dict, model: type) -> set[int]:
    label = model._meta.label_lower
    return {pk for rule in report["rules"] if rule["model"] == label for pk in rule["sample_pks"]}


def quarantined(model: type) -> set[int]:
    return set(model.objects.filter(data_source=DataSource.QUARANTINE).values_list("pk", flat=True))


def test_verify_integrity_names_every_fake_and_never_the_legitimate_document(incident):
    stdout, _stderr, status = run_command("verify_integrity", "--format", "json")
    report = json.loads(stdout)
    assert status == 1
    assert report["ok"] is False
    for model in (Submission, PublishedDraft):
        assert named_in(report, model) == incident.fakes[model]
        assert not named_in(report, model) & incident.legitimate[model]


def test_verify_integrity_shows_where_each_fake_came_from(incident):
    report = json.loads(run_command("verify_integrity", "--format", "json")[0])
    samples = {(rule["id"], sample["pk"]): sample for rule in report["rules"] for sample in rule["samples"]}
    [raw_sql] = [
        s for (rule_id, _), s in samples.items() if rule_id == "documents.E021" and s["history"] == "none"
    ]
    assert raw_sql["origin"] is None
    script = [
        s for (rule_id, _), s in samples.items() if rule_id == "documents.E020" and s["history"] == "created"
    ]
    assert script and all(s["user"] is None and s["origin"].startswith("process:") for s in script)


def test_scrub_dry_run_changes_nothing(incident, settings):
    settings.DEPLOYGUARD_SCRUB_MIN_ROWS = 5
    before = fingerprints()
    stdout, stderr, status = run_command("scrub_fake_data")
    assert status == 0, stderr
    assert "Would quarantine 6 submissions: ML-" in stdout
    assert "Would quarantine 3 published drafts: rfc" in stdout
    assert "--apply will refuse without --force" in stdout
    assert fingerprints() == before
    assert not ScrubRun.objects.exists()


def test_scrub_refuses_to_quarantine_most_of_a_table_without_force(incident, settings):
    settings.DEPLOYGUARD_SCRUB_MIN_ROWS = 5
    before = fingerprints()
    _stdout, stderr, status = run_command("scrub_fake_data", "--apply")
    assert status == 1
    assert "Refusing to quarantine 6 of 8 submissions" in stderr
    assert fingerprints() == before


def test_scrub_apply_quarantines_exactly_the_fakes_and_restore_undoes_it(incident):
    legit_history = {
        model: model.history.filter(id__in=incident.legitimate[model]).count()
        for model in (Submission, PublishedDraft)
    }
    legit_rows = {
        model: list(model.objects.filter(pk__in=incident.legitimate[model]).values())
        for model in (Submission, PublishedDraft)
    }
    before_apply = fingerprints(Submission, PublishedDraft)

    stdout, stderr, status = run_command("scrub_fake_data", "--apply", "--force")

    assert status == 0, stderr
    run = ScrubRun.objects.get()
    assert f"Quarantined 6 submissions and 3 published drafts in run {run.id}" in stdout
    for model in (Submission, PublishedDraft):
        assert quarantined(model) == incident.fakes[model]
        assert not model.objects.filter(pk__in=incident.fakes[model], is_legitimate=True).exists()
        # Rows that pass every rule are not touched: not a field, not a history record.
        assert list(model.objects.filter(pk__in=incident.legitimate[model]).values()) == legit_rows[model]
        assert model.history.filter(id__in=incident.legitimate[model]).count() == legit_history[model]
        for pk in incident.fakes[model]:
            latest = model.history.filter(id=pk).latest()
            assert run.id in latest.history_change_reason
            assert "documents." in latest.history_change_reason
            assert latest.data_source == DataSource.QUARANTINE

    stdout, stderr, status = run_command("verify_integrity")
    assert status == 0, stdout + stderr

    stdout, stderr, status = run_command("scrub_fake_data", "--restore", run.id)
    assert status == 0, stderr
    assert f"Restored 6 submissions and 3 published drafts from run {run.id}." in stdout
    assert fingerprints(Submission, PublishedDraft) == before_apply
    assert run_command("verify_integrity")[2] == 1


def test_a_run_is_restored_only_once(incident):
    run_command("scrub_fake_data", "--apply", "--force")
    run = ScrubRun.objects.get()
    assert run_command("scrub_fake_data", "--restore", run.id)[2] == 0
    _stdout, stderr, status = run_command("scrub_fake_data", "--restore", run.id)
    assert status == 1
    assert "already restored" in stderr


def test_restore_of_an_unknown_run_is_misuse(db):
    _stdout, stderr, status = run_command("scrub_fake_data", "--restore", "nope")
    assert status == 2
    assert stderr.strip().count("\n") == 0
    assert "No quarantine run 'nope'" in stderr
