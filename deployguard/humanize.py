"""Times as people read them: "14:02 UTC (12 minutes ago)", "in about 10 minutes"."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from deployguard.state import DeployModeStatus

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def span(seconds: float) -> str:
    """A length of time, rounded the way people say it: "42 seconds", "about 10 minutes"."""
    seconds = abs(seconds)
    if seconds < 0.5:
        return "less than a second"
    if round(seconds) < MINUTE:
        return _plural(round(seconds), "second")
    minutes = round(seconds / MINUTE)
    if minutes < 60:
        return f"about {_plural(minutes, 'minute')}"
    if seconds < 2 * DAY:
        hours, rest = divmod(minutes, 60)
        if hours < 3 and rest >= 5:
            return f"about {_plural(hours, 'hour')} {_plural(rest, 'minute')}"
        return f"about {_plural(hours + (rest >= 30), 'hour')}"
    return f"about {_plural(round(seconds / DAY), 'day')}"


def relative(moment: datetime, *, now: datetime | None = None) -> str:
    """ "12 minutes ago", "in about 10 minutes", "just now"."""
    delta = (moment - (now or timezone.now())).total_seconds()
    if abs(delta) < 5:
        return "just now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def clock(moment: datetime, *, now: datetime | None = None) -> str:
    """The local time, with the day when it is not today and the zone: "14:02 UTC", "3 Jan 2026 14:02 UTC"."""
    local = timezone.localtime(moment)
    today = timezone.localtime(now or timezone.now()).date()
    zone = local.tzname() or ""
    time_of_day = f"{local:%H:%M} {zone}".strip()
    if local.date() == today:
        return time_of_day
    return f"{local.day} {local:%b %Y} {time_of_day}"


def when(moment: datetime, *, now: datetime | None = None) -> str:
    """ "14:02 UTC (12 minutes ago)"."""
    now = now or timezone.now()
    return f"{clock(moment, now=now)} ({relative(moment, now=now)})"


def deploy_mode(status: DeployModeStatus, *, private: bool, now: datetime | None = None) -> str:
    """How deploy mode got to be what it is, in human times. `private`: for staff, who may see
    who switched it (an account, a host) and why the state could not be read."""
    now = now or timezone.now()
    if not status.enabled:
        return "Deploy mode is off."
    if status.source != "database":
        return status.describe() if private else status.describe_public()
    parts = [f"On since {when(status.since, now=now)}" if status.since else "On"]
    if private:
        parts[0] += f", turned on by {status.changed_by or 'unknown'}"
    parts[0] += "."
    parts.append(f"Reason: {status.reason or 'none given'}.")
    if status.deploy_id:
        parts.append(f"Deploy {status.deploy_id}.")
    if status.expected_end:
        end = f"{relative(status.expected_end, now=now)} ({clock(status.expected_end, now=now)})"
        overdue = status.expected_end <= now
        parts.append(f"It was expected to end {end}." if overdue else f"Expected to end {end}.")
    return " ".join(parts)
