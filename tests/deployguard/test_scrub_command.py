"""scrub_fake_data's share limit has a floor in rows, and its dry run says what --force changes."""

from __future__ import annotations

from deployguard.management.commands.scrub_fake_data import DRY_RUN_DONE
from documents.models import Submission
from tests.factories import SubmissionFactory, published_draft
from tests.utils import run_command


def _site(legitimate: int, fakes: int) -> list[Submission]:
    for _ in range(legitimate):
        published_draft()
    return [SubmissionFactory(submitted_by="Test User") for _ in range(fakes)]


def test_a_handful_of_fakes_on_a_small_site_is_quarantined_without_force(db, settings):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 0.2
    settings.DEPLOYGUARD_SCRUB_MIN_ROWS = 10
    [fake] = _site(legitimate=3, fakes=1)  # 1 of 4 submissions: 25%, over the share, under the floor

    stdout, stderr, status = run_command("scrub_fake_data")
    assert (stderr, status) == ("", 0)
    assert stdout == f"Would quarantine 1 submission: {fake.ml_number}\n{DRY_RUN_DONE}\n"

    stdout, stderr, status = run_command("scrub_fake_data", "--apply")
    assert (stderr, status) == ("", 0)
    assert stdout.startswith("Quarantined 1 submission in run ")
    assert Submission.objects.filter(data_source="quarantine").count() == 1


def test_more_than_the_floor_and_over_the_share_is_refused_without_force(db, settings):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 0.2
    settings.DEPLOYGUARD_SCRUB_MIN_ROWS = 2
    _site(legitimate=1, fakes=3)

    stdout, stderr, status = run_command("scrub_fake_data", "--apply")

    assert (stdout, status) == ("", 1)
    assert stderr == (
        "CommandError: Refusing to quarantine 3 of 4 submissions (75% > DEPLOYGUARD_SCRUB_MAX_SHARE=20%, "
        "and more than DEPLOYGUARD_SCRUB_MIN_ROWS=2 rows): a broken rule must not empty production. "
        "Check the rules with verify_integrity, then rerun with --force.\n"
    )
    assert not Submission.objects.filter(data_source="quarantine").exists()


def test_a_dry_run_says_what_apply_will_do_with_and_without_force(db, settings):
    settings.DEPLOYGUARD_SCRUB_MAX_SHARE = 0.2
    settings.DEPLOYGUARD_SCRUB_MIN_ROWS = 2
    _site(legitimate=1, fakes=3)
    warning = "  That is 75% of 4 rows, over DEPLOYGUARD_SCRUB_MAX_SHARE=20%: "

    stdout, _stderr, status = run_command("scrub_fake_data")
    assert status == 0
    assert f"\n{warning}--apply will refuse without --force.\n" in stdout

    stdout, _stderr, status = run_command("scrub_fake_data", "--force")
    assert status == 0
    assert f"\n{warning}--force lets --apply quarantine them anyway.\n" in stdout
    assert "refuse" not in stdout
