"""A whole-table scrub and its restore work in bounded batches, one transaction each."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from django.db import transaction

from deployguard import scrub
from deployguard.integrity import default_registry
from deployguard.models_integrity import ScrubRow, ScrubRun
from documents import services
from documents.models import DataSource, PublishedDraft, Submission
from tests.documents.test_scrub_incident import fingerprints, incident, quarantined  # noqa: F401
from tests.utils import run_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(scrub, "BATCH_ROWS", 2)


def count_transactions(monkeypatch) -> list[int]:
    """How many transactions deployguard.scrub opens (the services' own nest inside them)."""
    opened: list[int] = []

    def counting(*args, **kwargs):
        opened.append(1)
        return transaction.atomic(*args, **kwargs)

    monkeypatch.setattr(scrub, "transaction", SimpleNamespace(atomic=counting))
    return opened


def test_apply_in_batches_quarantines_exactly_what_one_pass_would_and_restores_it(
    incident,  # noqa: F811
    small_batches,
    monkeypatch,
):
    before = fingerprints(Submission, PublishedDraft)
    opened = count_transactions(monkeypatch)

    stdout, stderr, status = run_command("scrub_fake_data", "--apply", "--force")

    assert status == 0, stderr
    run = ScrubRun.objects.get()
    assert f"Quarantined 6 submissions and 3 published drafts in run {run.id}" in stdout
    for model in (Submission, PublishedDraft):
        assert quarantined(model) == incident.fakes[model]
    # 6 submissions in batches of 2, 3 drafts in batches of 2: a transaction per batch.
    assert len(opened) == 3 + 2
    assert run.counts == {"documents.submission": 6, "documents.publisheddraft": 3}
    assert not ScrubRow.objects.filter(run=run, prior={}).exists()

    opened.clear()
    stdout, stderr, status = run_command("scrub_fake_data", "--restore", run.id)

    assert status == 0, stderr
    assert f"Restored 6 submissions and 3 published drafts from run {run.id}." in stdout
    assert fingerprints(Submission, PublishedDraft) == before
    assert len(opened) == 1 + 3 + 2  # the claim, then a transaction per batch


def test_a_run_cut_short_keeps_what_it_did_and_restores_exactly_that(
    incident,  # noqa: F811
    small_batches,
    monkeypatch,
):
    before = fingerprints(Submission, PublishedDraft)
    real_quarantine = services.quarantine_rows
    calls = []

    def dies_on_the_third_batch(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine restarted")
        return real_quarantine(**kwargs)

    original = default_registry.quarantines[Submission]
    monkeypatch.setitem(
        default_registry.quarantines,
        Submission,
        dataclasses.replace(original, quarantine=dies_on_the_third_batch),
    )

    with pytest.raises(RuntimeError):
        scrub.quarantine_in_batches(default_registry.select())

    run = ScrubRun.objects.get()
    done = set(Submission.objects.filter(data_source=DataSource.QUARANTINE).values_list("pk", flat=True))
    assert 0 < len(done) < 6
    assert done <= incident.fakes[Submission]

    monkeypatch.setitem(default_registry.quarantines, Submission, original)
    restored = scrub.restore(run.id)

    assert restored == {"documents.submission": len(done)}
    assert fingerprints(Submission, PublishedDraft) == before


def test_a_restore_cut_short_can_be_run_again(incident, small_batches, monkeypatch):  # noqa: F811
    run = scrub.quarantine_in_batches(default_registry.select())
    before_restore = ScrubRun.objects.get().restored_at
    original = default_registry.quarantines[Submission]

    def dies(**kwargs):
        raise RuntimeError("killed")

    monkeypatch.setitem(default_registry.quarantines, Submission, dataclasses.replace(original, restore=dies))
    with pytest.raises(RuntimeError):
        scrub.restore(run.id)
    assert ScrubRun.objects.get().restored_at == before_restore is None

    monkeypatch.setitem(default_registry.quarantines, Submission, original)
    assert scrub.restore(run.id) == {"documents.submission": 6, "documents.publisheddraft": 3}
    assert not quarantined(Submission) and not quarantined(PublishedDraft)
