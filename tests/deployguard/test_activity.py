"""Activity: history records per hour or day and origin kind, and the deploy windows, from any app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployguard import activity, state
from deployguard.origin import deploy, origin
from documents.models import PublishedDraft, Submission
from tests.factories import DeployRecordFactory, SubmissionFactory
from tests.utils import rewriting_history

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 4, tzinfo=UTC)


def move_history(ml_numbers: list[str], to: datetime) -> None:
    """Date the history records of these submissions at `to` (tests plant activity in the past)."""
    with rewriting_history():
        Submission.history.filter(ml_number__in=ml_numbers).update(history_date=to)


def plant(count: int, *, label: str, at: datetime, actor, deploy_id: str = "") -> list[str]:
    numbers = []
    with origin(label), deploy(deploy_id):
        for _ in range(count):
            numbers.append(SubmissionFactory(actor=actor).ml_number)
    move_history(numbers, at)
    return numbers


@pytest.mark.parametrize(
    ("origin_", "deploy_id", "kind"),
    [
        ("request:POST /admin/documents/submission/add/", "", "request"),
        ("command:seed_demo pid=1 host=web-1", "", "command"),
        ("process:celery pid=1 host=worker-1", "", "job"),
        ("job:integrity_watch", "", "job"),
        ("command:deploy_safe_migrate pid=2 host=web-1", "d-42", "deploy"),
        ("", "", "unknown"),
        ("something else", "", "unknown"),
    ],
)
def test_each_origin_has_one_kind(origin_, deploy_id, kind):
    assert activity.kind_of(origin_, deploy_id) == kind


def test_the_tracked_models_are_the_protected_ones_with_history():
    assert [tracked.model for tracked in activity.tracked_models()] == [Submission, PublishedDraft]
    assert all(tracked.has_origin for tracked in activity.tracked_models())


def test_a_spike_of_rows_created_by_a_command_stands_out_in_its_hour(superuser):
    plant(
        1,
        label="request:POST /admin/documents/submission/add/",
        at=DAY + timedelta(hours=10),
        actor=superuser,
    )
    plant(
        8, label="command:seed_demo pid=1 host=x", at=DAY + timedelta(hours=14, minutes=20), actor=superuser
    )

    found = activity.collect(DAY, DAY + timedelta(days=1), bucket="hour")

    assert found.counts == {
        DAY + timedelta(hours=10): {"request": 1},
        DAY + timedelta(hours=14): {"command": 8},
    }
    assert found.peak() == (DAY + timedelta(hours=14), 8)
    assert len(found.buckets()) == 24


def test_rows_written_during_a_deploy_count_as_the_deploy_s(superuser):
    plant(2, label="command:deploy_safe_migrate pid=2 host=x", at=DAY, actor=superuser, deploy_id="d-42")

    found = activity.collect(DAY, DAY + timedelta(days=1), bucket="day")

    assert found.counts == {DAY: {"deploy": 2}}


def test_created_counts_creations_only_and_changed_counts_the_rest(superuser):
    with origin("request:POST /admin/x/"):
        submission = SubmissionFactory(actor=superuser, status="approved")  # created, then changed
    move_history([submission.ml_number], DAY)

    def count(what: str) -> int:
        return activity.collect(DAY, DAY + timedelta(days=1), bucket="day", what=what).total(DAY)

    assert (count("created"), count("changed"), count("all")) == (1, 1, 2)


def test_rows_outside_the_range_are_not_counted(superuser):
    plant(3, label="command:x", at=DAY - timedelta(seconds=1), actor=superuser)
    plant(2, label="command:x", at=DAY + timedelta(days=1), actor=superuser)

    assert activity.collect(DAY, DAY + timedelta(days=1)).counts == {}


def test_deploys_and_deploy_mode_switched_on_by_hand_are_windows(settings):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    DeployRecordFactory(
        deploy_id="d-1", started_at=DAY + timedelta(hours=3), finished_at=DAY + timedelta(hours=3, minutes=2)
    )
    DeployRecordFactory(
        deploy_id="d-old",
        started_at=DAY - timedelta(days=3),
        finished_at=DAY - timedelta(days=3) + timedelta(minutes=2),
    )
    state.enable(reason="Hotfix", changed_by="ops@host")
    state.disable(changed_by="ops@host")
    now = datetime.now(UTC)

    windows = activity.deploy_windows(DAY, now + timedelta(hours=1))

    assert [w.label for w in windows] == ["deploy d-1 (succeeded)", "deploy mode: Hotfix"]
    assert windows[0].end - windows[0].start == timedelta(minutes=2)


def test_deploy_mode_still_on_is_a_window_until_now(settings):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    state.enable(reason="Release 42", changed_by="ops@host")

    [window] = activity.deploy_windows(
        datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    )

    assert window.label == "deploy mode: Release 42"
    assert window.end <= datetime.now(UTC)


def test_the_number_of_queries_does_not_grow_with_the_rows(superuser):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            activity.collect(DAY, DAY + timedelta(days=7))
        return len(captured)

    plant(2, label="command:x", at=DAY + timedelta(hours=1), actor=superuser)
    few = queries()
    plant(20, label="request:POST /x/", at=DAY + timedelta(days=2), actor=superuser)
    DeployRecordFactory(started_at=DAY + timedelta(hours=5))

    assert queries() == few == len(activity.tracked_models()) + 3
