"""What a process knows about deploy mode, and where it learnt it: `DeployModeStatus`.

A value with no behaviour beyond describing itself, so that the refusals (deployguard.exceptions)
and the switch that reads the state (deployguard.state) can both use it without importing each other.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from django.utils import timezone

ENVIRONMENT_VARIABLE = "DEPLOYMENT_MODE"

Source = Literal["database", "environment", "process", "unreadable", "not-installed", "lost"]


@dataclass(frozen=True)
class DeployModeStatus:
    """What a process knows about deploy mode, and where it learnt it."""

    enabled: bool
    source: Source
    reason: str = ""
    changed_by: str = ""
    since: datetime | None = None
    deploy_id: str = ""
    expected_end: datetime | None = None
    error: str = ""

    def describe(self) -> str:
        """One sentence on how deploy mode got to be what it is."""
        if self.source == "environment":
            value = os.environ.get(ENVIRONMENT_VARIABLE, "")
            return f"It is forced on for this process by the environment variable {ENVIRONMENT_VARIABLE}={value}."  # noqa: E501
        if self.source == "process":
            return f"It is forced on for this process: {self.reason}."
        if self.source == "unreadable":
            return f"The deploy mode state could not be read ({self.error}), so writes are refused."
        if self.source == "lost":
            return (
                "Deploy mode is on, state lost: its state row is missing although it has been switched "
                "on this database, so writes are refused. Run `manage.py deploy_mode off` (or `on`) to "
                "set it again."
            )
        if self.source == "not-installed":
            return "Deploy mode is off: deployguard's table does not exist yet (run `manage.py migrate`)."
        if not self.enabled:
            if self.changed_by:
                return f"Deploy mode is off (last switched by {self.changed_by})."
            return "Deploy mode is off."
        parts = [f"It was turned on by {self.changed_by or 'unknown'}"]
        if self.since:
            parts.append(f" at {self.since.isoformat(timespec='seconds')}")
        parts.append(f" (reason: {self.reason or 'none given'}")
        if self.deploy_id:
            parts.append(f"; deploy {self.deploy_id}")
        if self.expected_end:
            parts.append(f"; expected to end at {self.expected_end.isoformat(timespec='seconds')}")
        parts.append(").")
        return "".join(parts)

    def describe_public(self) -> str:
        """describe() for a visitor who may be anyone: no account or address of who switched it,
        no database error text."""
        if not self.enabled:
            return "Deploy mode is off."
        if self.source == "unreadable":
            return "The deploy mode state could not be read, so writes are refused."
        if self.source == "lost":
            return "Deploy mode is on: its state was lost, so writes are refused."
        if self.source in ("environment", "process"):
            return "Deploy mode is on for this server."
        parts = ["Deploy mode is on"]
        if self.since:
            parts.append(f" since {self.since.isoformat(timespec='seconds')}")
        parts.append(f" (reason: {self.reason or 'none given'}")
        if self.expected_end:
            parts.append(f"; expected to end at {self.expected_end.isoformat(timespec='seconds')}")
        parts.append(").")
        return "".join(parts)

    def retry_after(self, default: int) -> int:
        """Seconds a client should wait: until the expected end when known, else `default`."""
        if self.expected_end:
            remaining = math.ceil((self.expected_end - timezone.now()).total_seconds())
            if remaining > 0:
                return remaining
        return default

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "source": self.source,
            "reason": self.reason,
            "who": self.changed_by,
            "since": self.since.isoformat() if self.since else None,
            "deploy_id": self.deploy_id,
            "expected_end": self.expected_end.isoformat() if self.expected_end else None,
            "error": self.error,
        }

    def as_public_dict(self) -> dict[str, Any]:
        """as_dict() without `who` and `error`: what /_deploy/status and 503s show to anyone."""
        return {key: value for key, value in self.as_dict().items() if key not in PRIVATE_FIELDS}


PRIVATE_FIELDS = frozenset({"who", "error"})
"""Who switched deploy mode (an account, a host, a caller's address) and database error text:
shown to staff and to holders of the deploy token only."""
