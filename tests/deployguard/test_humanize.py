"""Times as people read them, and deploy mode described in those terms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deployguard import humanize
from deployguard.state import DeployModeStatus

NOW = datetime(2026, 3, 4, 14, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.2, "less than a second"),
        (0.7, "1 second"),
        (42, "42 seconds"),
        (59.6, "about 1 minute"),
        (60, "about 1 minute"),
        (591, "about 10 minutes"),
        (3_570, "about 1 hour"),
        (3_600 + 25 * 60, "about 1 hour 25 minutes"),
        (5 * 3_600 + 40 * 60, "about 6 hours"),
        (3 * 86_400, "about 3 days"),
        (-600, "about 10 minutes"),
    ],
)
def test_a_span_is_rounded_the_way_people_say_it(seconds, said):
    assert humanize.span(seconds) == said


def test_a_moment_today_is_its_time_and_zone_and_how_long_ago():
    assert (
        humanize.when(NOW - timedelta(minutes=12, seconds=30), now=NOW) == "14:02 UTC (about 12 minutes ago)"
    )
    assert humanize.when(NOW + timedelta(minutes=10), now=NOW) == "14:24 UTC (in about 10 minutes)"
    assert humanize.when(NOW, now=NOW) == "14:14 UTC (just now)"


def test_a_moment_on_another_day_has_its_date():
    assert humanize.when(NOW - timedelta(days=2), now=NOW) == "2 Mar 2026 14:14 UTC (about 2 days ago)"


def test_deploy_mode_is_described_in_human_times_with_who_only_for_staff():
    status = DeployModeStatus(
        enabled=True,
        source="database",
        reason="Release 2026.11",
        changed_by="ci@build-7",
        since=NOW - timedelta(minutes=12),
        deploy_id="d-42",
        expected_end=NOW + timedelta(minutes=10),
    )

    assert humanize.deploy_mode(status, private=True, now=NOW) == (
        "On since 14:02 UTC (about 12 minutes ago), turned on by ci@build-7. Reason: Release 2026.11. "
        "Deploy d-42. Expected to end in about 10 minutes (14:24 UTC)."
    )
    assert humanize.deploy_mode(status, private=False, now=NOW) == (
        "On since 14:02 UTC (about 12 minutes ago). Reason: Release 2026.11. "
        "Deploy d-42. Expected to end in about 10 minutes (14:24 UTC)."
    )


def test_an_overdue_deploy_says_when_it_was_expected_to_end():
    status = DeployModeStatus(
        enabled=True, source="database", reason="R", changed_by="x", since=NOW - timedelta(hours=1),
        expected_end=NOW - timedelta(minutes=5),
    )  # fmt: skip

    assert humanize.deploy_mode(status, private=False, now=NOW).endswith(
        "It was expected to end about 5 minutes ago (14:09 UTC)."
    )


def test_an_unreadable_state_shows_its_error_only_to_staff():
    status = DeployModeStatus(enabled=True, source="unreadable", error="connection refused")

    assert "connection refused" in humanize.deploy_mode(status, private=True)
    assert "connection refused" not in humanize.deploy_mode(status, private=False)
