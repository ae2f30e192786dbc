from __future__ import annotations

from deployguard.fingerprint import fingerprint_table
from deployguard.models_integrity import ScrubRun
from documents.models import PublishedDraft, Submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command


def test_scrub_apply_refuses_in_deploy_mode_before_any_work(db, settings, fast_switch):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 1
    published_draft()
    SubmissionFactory(submitted_by="Test User")
    before = [fingerprint_table(Submission), fingerprint_table(PublishedDraft)]
    from deployguard import state

    state.enable(reason="Release 42", changed_by="ops@deploy-host", deploy_id="d-42")

    _stdout, stderr, status = run_command("scrub_fake_data", "--apply")

    assert status == 1
    assert "scrub_fake_data" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert [fingerprint_table(Submission), fingerprint_table(PublishedDraft)] == before
    assert not ScrubRun.objects.exists()
    # Reads still work: the dry run and verify_integrity say what they would do.
    assert "Would quarantine 1 submission" in run_command("scrub_fake_data")[0]
    assert run_command("verify_integrity")[2] == 1
