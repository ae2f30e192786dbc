"""What a process knows about deploy mode: how it describes itself, to staff and to anyone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from deployguard.status import DeployModeStatus

SINCE = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_on_from_the_shared_state_says_who_why_when_and_until_when():
    status = DeployModeStatus(
        enabled=True, source="database", reason="Release 42", changed_by="ops@host", since=SINCE,
        deploy_id="d-42", expected_end=SINCE + timedelta(minutes=10),
    )  # fmt: skip

    assert status.describe() == (
        "It was turned on by ops@host at 2026-11-02T09:30:00+00:00 (reason: Release 42; deploy d-42; "
        "expected to end at 2026-11-02T09:40:00+00:00)."
    )
    assert status.describe_public() == (
        "Deploy mode is on since 2026-11-02T09:30:00+00:00 (reason: Release 42; "
        "expected to end at 2026-11-02T09:40:00+00:00)."
    )
    assert "who" not in status.as_public_dict()
    assert status.as_dict()["who"] == "ops@host"


def test_each_source_says_where_the_state_came_from(monkeypatch):
    monkeypatch.setenv("DEPLOYMENT_MODE", "true")

    assert DeployModeStatus(enabled=True, source="environment").describe() == (
        "It is forced on for this process by the environment variable DEPLOYMENT_MODE=true."
    )
    assert DeployModeStatus(enabled=True, source="process", reason="deploy_safe").describe() == (
        "It is forced on for this process: deploy_safe."
    )
    unreadable = DeployModeStatus(enabled=True, source="unreadable", error="connection refused")
    assert unreadable.describe() == (
        "The deploy mode state could not be read (connection refused), so writes are refused."
    )
    assert unreadable.describe_public() == "The deploy mode state could not be read, so writes are refused."
    assert "connection refused" not in str(unreadable.as_public_dict())
    assert DeployModeStatus(enabled=False, source="database", changed_by="ops@host").describe() == (
        "Deploy mode is off (last switched by ops@host)."
    )


def test_retry_after_counts_down_to_the_expected_end_else_the_default():
    soon = DeployModeStatus(enabled=True, source="database", expected_end=timezone.now() + timedelta(hours=1))
    past = DeployModeStatus(
        enabled=True, source="database", expected_end=timezone.now() - timedelta(seconds=5)
    )

    assert 3500 < soon.retry_after(120) <= 3600
    assert past.retry_after(120) == 120
    assert DeployModeStatus(enabled=True, source="database").retry_after(120) == 120
