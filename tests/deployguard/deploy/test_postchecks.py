"""The post-checks after migrate: the same data as at the freeze, integrity no worse."""

from __future__ import annotations

from deployguard.deploy import postchecks, rules
from deployguard.deploy.rules import RulesBefore
from deployguard.deploy.steps import FAILED, OK, Alongside, Steps
from deployguard.fingerprints import FingerprintsAt
from deployguard.tables import migrate_writable_tables
from tests.deployguard.support import fingerprints_as_frozen
from tests.documents.fakes import raw_insert_submission, raw_update_submission


def _post_check(
    alongside: Alongside, frozen: FingerprintsAt, before: RulesBefore
) -> tuple[Steps, postchecks.PostChecked]:
    steps = Steps(lambda style, text: None, verbosity=0)
    checked = postchecks.run(
        steps, alongside, using="default", frozen=frozen, skip=migrate_writable_tables(), before=before,
        baseline=None, baseline_after_migrate=False,
    )  # fmt: skip
    return steps, checked


def test_a_deploy_that_changed_nothing_passes_every_post_check(transactional_db, alongside):
    from tests.factories import SubmissionFactory

    SubmissionFactory(ml_number="ML-001")
    before = RulesBefore(rules.count())

    steps, checked = _post_check(alongside, fingerprints_as_frozen(), before)

    assert checked.problem == ""
    assert [(step.name, step.status) for step in steps.taken] == [
        ("post-check: health", OK), ("post-check: fingerprints", OK), ("post-check: integrity", OK),
    ]  # fmt: skip
    integrity = steps.taken[-1].detail
    assert (integrity["before"], integrity["after"]) == (before.counts, before.counts)
    assert integrity["alongside"] == "the fingerprints"


def test_a_row_changed_behind_the_deploy_fails_the_fingerprint_post_check(transactional_db, alongside):
    from tests.factories import SubmissionFactory

    submission = SubmissionFactory(ml_number="ML-001", title="First")
    before = RulesBefore(rules.count())
    frozen = fingerprints_as_frozen()
    raw_update_submission(submission.pk, title="Changed behind the deploy's back")

    steps, checked = _post_check(alongside, frozen, before)

    assert checked.problems == [
        "Data changed during the deploy: documents_submission: 1 rows both times, contents differ",
        "Integrity is worse than before: documents.E022 1 rows",  # changed without a history record
    ]
    assert {step.name: step.status for step in steps.taken}["post-check: fingerprints"] == FAILED


def test_integrity_worse_than_before_fails_the_integrity_post_check(transactional_db, alongside):
    before = RulesBefore(rules.count())
    raw_insert_submission("ML-900")  # no creation record (documents.E020), no match keys (E007)
    frozen = fingerprints_as_frozen()

    steps, checked = _post_check(alongside, frozen, before)

    assert checked.problems == [
        "Integrity is worse than before: documents.E007 1 rows, documents.E020 1 rows"
    ]
    assert steps.taken[-1].status == FAILED
