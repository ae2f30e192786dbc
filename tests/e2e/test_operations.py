"""The Operations section as operators use it, in a real browser: deploy mode, deploys, integrity,
quarantine runs and activity; and what a staff user without its permissions can and cannot do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from deployguard import integrity_runs, scrub, state
from deployguard.integrity import default_registry
from deployguard.middleware import REFUSED_CHANGE
from deployguard.models_integrity import ScrubRun
from documents.models import DataSource, Submission
from tests.deployguard.test_activity import plant
from tests.documents.fakes import raw_insert_submission
from tests.e2e.conftest import log_in
from tests.factories import (
    DOCUMENTS_PERMISSIONS,
    DeployRecordFactory,
    OperatorFactory,
    StaffFactory,
    SubmissionFactory,
    SuperuserFactory,
)

pytestmark = pytest.mark.e2e

OPS = "deployguard"
MESSAGES = ".messagelist:not(#deploy-mode-banner)"
FAILED_DEPLOY = {
    "freeze_window_s": 38.2,
    "steps": [
        {"name": "pre-checks", "status": "ok", "seconds": 2.4},
        {"name": "migrate", "status": "failed", "seconds": 6.1},
    ],
    "blocked_writes": [
        {
            "exception": "DeployModeActive",
            "message": "Deploy mode is on: INSERT on documents_submission refused.",
            "where": "documents/apps.py:31 in ready() -> documents/seed.py:12 in seed_demo()",
        }
    ],
    "data_migration_changes": {},
}


@pytest.fixture
def instant_switch(settings):
    """The live server runs in this process: no cache makes each switch visible at once. Off after."""
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    state.clear_cache()
    yield
    state.disable(changed_by="pytest")
    state.clear_cache()


@pytest.fixture
def operator_page(page, admin_url, transactional_db, instant_switch):
    page.operator = OperatorFactory(username="operator", permissions=DOCUMENTS_PERMISSIONS)
    log_in(page, admin_url, "operator")
    return page


def post_with_csrf(page: Page, url: str, form: dict[str, str] | None = None) -> int:
    """POST as the logged-in browser would, with its session and CSRF token: the status it gets."""
    token = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    response = page.request.post(url, form={"csrfmiddlewaretoken": token, **(form or {})},
                                 headers={"Referer": url}, max_redirects=0)  # fmt: skip
    return response.status


def test_a_staff_user_without_operations_permissions_sees_no_section_and_gets_403_everywhere(
    page: Page, admin_url, transactional_db, instant_switch
):
    StaffFactory(username="staff", permissions=DOCUMENTS_PERMISSIONS)
    SubmissionFactory(actor=SuperuserFactory())
    raw_insert_submission("ML-901", submitted_by="Test User")
    run = scrub.quarantine(scrub.select_rows(default_registry.select()))
    log_in(page, admin_url, "staff")

    expect(page.locator(f"#nav-sidebar .app-{OPS}, .app-{OPS}.module")).to_have_count(0)
    for path in ("deploymodestate/", "deploymodestate/off/", "deployrecord/", "integrityrun/", "scrubrun/",
                 f"scrubrun/{run.id}/", f"scrubrun/{run.id}/restore/", "operations/"):  # fmt: skip
        assert page.goto(f"{admin_url}{OPS}/{path}").status == 403, path
    # Not only hidden buttons: the POSTs themselves, with a valid session and CSRF token.
    page.goto(admin_url)
    assert (
        post_with_csrf(page, f"{admin_url}{OPS}/deploymodestate/on/", {"reason": "x", "confirmed": "yes"})
        == 403
    )
    assert post_with_csrf(page, f"{admin_url}{OPS}/deploymodestate/off/", {"fingerprint": "x"}) == 403
    assert post_with_csrf(page, f"{admin_url}{OPS}/scrubrun/{run.id}/restore/") == 403
    assert post_with_csrf(page, f"{admin_url}{OPS}/integrityrun/recount/") == 403
    assert state.current().enabled is False
    assert ScrubRun.objects.get(pk=run.id).restored_at is None


def test_deploy_mode_switched_on_in_the_admin_then_a_save_is_refused_inside_the_admin_frame(
    operator_page: Page, admin_url, snapshot, browser
):
    page = operator_page
    submission = SubmissionFactory(actor=page.operator, title="Original title")
    # A colleague has the change form open before the deploy starts, and types a change.
    colleague = page.context.new_page()
    colleague.goto(f"{admin_url}documents/submission/{submission.pk}/change/")
    colleague.fill("#id_title", "Typed during the deploy")

    page.goto(f"{admin_url}{OPS}/deploymodestate/")
    expect(page.locator("#deploy-mode-state-title")).to_have_text("Deploy mode is off")
    snapshot(page, "operations-deploy-mode-off")
    page.fill("#id_reason", "Release 2026.11")
    page.fill("#id_expected_minutes", "10")
    page.click("input[value='Turn deploy mode on…']")
    expect(page.locator("h1")).to_have_text("Turn deploy mode on?")
    assert state.current().enabled is False
    snapshot(page, "operations-deploy-mode-confirm")
    page.click("input[value='Yes, turn deploy mode on']")
    expect(page.locator(MESSAGES)).to_contain_text("Deploy mode is on: every write to the protected tables")
    expect(page.locator("#deploy-mode-description")).to_contain_text("turned on by operator via the admin")
    expect(page.locator("#deploy-mode-description")).to_contain_text("Expected to end in about 10 minutes")
    expect(page.locator("#deploy-mode-banner")).to_contain_text("Deploy mode is on: changes are paused.")
    snapshot(page, "operations-deploy-mode-on")

    with colleague.expect_response(lambda r: r.request.method == "POST") as answer:
        colleague.click("input[name=_save]")
    assert answer.value.status == 503
    expect(colleague.locator("#deploy-mode-refusal")).to_have_text(REFUSED_CHANGE)
    expect(colleague.locator(".breadcrumbs")).to_contain_text(
        "Home \u203a Documents \u203a Submissions \u203a Change not saved"
    )
    expect(colleague.locator("#site-name")).to_be_visible()
    colleague.click("#deploy-mode-back")
    expect(colleague.locator("#deploy-paused-save")).to_be_visible()
    expect(colleague.locator("input[name=_save]")).to_be_disabled()
    expect(colleague.locator("#id_title")).to_be_disabled()
    colleague.set_viewport_size({"width": 1280, "height": 900})  # the banner and the paused buttons
    snapshot(colleague, "operations-form-paused")
    assert Submission.objects.get(pk=submission.pk).title == "Original title"

    page.click("#switch-off")
    expect(page.locator("h1")).to_have_text("Turn deploy mode off?")
    page.click("input[value='Yes, turn deploy mode off']")
    expect(page.locator(MESSAGES)).to_contain_text("Deploy mode is off: writes are allowed again.")
    expect(page.locator("#deploy-mode-history")).to_contain_text("Deploy mode on: Release 2026.11")


def test_logging_in_is_paused_and_says_why_without_naming_who_switched_deploy_mode(
    page: Page, admin_url, transactional_db, instant_switch, snapshot
):
    state.enable(reason="Release 2026.11", changed_by="ci@build-7", expected_minutes=10)

    page.goto(admin_url)

    expect(page.locator("#login-paused")).to_contain_text(
        "Logging in is paused while the site is being deployed"
    )
    expect(page.locator("#login-paused")).to_contain_text("the time of your last login")
    expect(page.locator("input[type=submit]")).to_be_disabled()
    expect(page.locator("body")).not_to_contain_text("ci@build-7")
    snapshot(page, "operations-login-paused")


def test_the_activity_chart_shows_a_planted_spike_at_a_glance(operator_page: Page, admin_url, snapshot):
    page = operator_page
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    plant(
        1,
        label="request:POST /admin/documents/submission/add/",
        at=day + timedelta(hours=9),
        actor=page.operator,
    )
    plant(
        8,
        label="command:seed_demo pid=4242 host=web-1",
        at=day + timedelta(hours=14, minutes=5),
        actor=page.operator,
    )
    DeployRecordFactory(
        started_at=day + timedelta(hours=14), finished_at=day + timedelta(hours=14, minutes=2)
    )

    page.goto(f"{admin_url}{OPS}/operations/?start={day:%Y-%m-%d}&end={day:%Y-%m-%d}&bucket=hour&what=all")

    spike = page.locator("#activity-chart rect.series-command")
    single = page.locator("#activity-chart rect.series-request")
    expect(spike).to_have_count(1)
    spike_box, single_box = spike.bounding_box(), single.bounding_box()
    assert spike_box and single_box
    assert spike_box["height"] == pytest.approx(8 * single_box["height"], rel=0.02)
    expect(page.locator("#activity-summary")).to_contain_text("(8 by command)")
    expect(page.locator("#activity-chart .deploy-window")).to_have_count(1)
    snapshot(page, "operations-activity")
    page.click("#activity-table-details summary")
    expect(page.locator("#activity-table")).to_contain_text("14:00 to 15:00 UTC")


def test_a_quarantine_run_is_restored_from_the_admin(operator_page: Page, admin_url, snapshot):
    page = operator_page
    SubmissionFactory(actor=page.operator, title="Interoperable widgets")
    raw_insert_submission("ML-901", submitted_by="Test User")
    raw_insert_submission("ML-902", title="Fake widgets")
    run = scrub.quarantine(scrub.select_rows(default_registry.select()))

    page.goto(f"{admin_url}{OPS}/scrubrun/")
    snapshot(page, "operations-quarantine-runs")
    page.click(f"text={run.id}")
    expect(page.locator("#run-rows tbody tr")).to_have_count(2)
    snapshot(page, "operations-quarantine-run")
    page.click("#restore-run")
    expect(page.locator("#restore-plan")).to_contain_text("documents.submission")
    page.click("input[value='Yes, restore']")
    expect(page.locator(MESSAGES)).to_contain_text(f"Restored 2 submissions from quarantine run {run.id}.")
    expect(page.locator("#run-state")).to_contain_text("Restored")
    assert not Submission.objects.filter(data_source=DataSource.QUARANTINE).exists()


def test_integrity_counts_link_to_the_rows_and_deploys_show_their_steps(
    operator_page: Page, admin_url, snapshot
):
    page = operator_page
    SubmissionFactory(actor=page.operator)
    raw_insert_submission("ML-901", submitted_by="Test User")
    record = DeployRecordFactory(
        status="rolled_back", exit_status=1, message="Verification failed: 1 new row.", report=FAILED_DEPLOY
    )

    page.goto(f"{admin_url}{OPS}/integrityrun/")
    page.click("input[value='Recount now']")
    expect(page.locator(MESSAGES)).to_contain_text("Counted the rows of")
    snapshot(page, "operations-integrity")
    page.click("#rule-documentse007 a")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("ML-901")
    assert integrity_runs.latest().counts["documents.E007"] == 1

    page.goto(f"{admin_url}{OPS}/deployrecord/")
    snapshot(page, "operations-deploys")
    page.click(f"text={record.deploy_id}")
    expect(page.locator("#deploy-blocked-writes")).to_contain_text("documents/apps.py:31 in ready()")
    snapshot(page, "operations-deploy")
