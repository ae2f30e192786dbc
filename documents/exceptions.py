"""The refusals of the documents services; each message says what to do instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployguard import DeployModeActive

if TYPE_CHECKING:
    from deployguard.state import DeployModeStatus


class DocumentsRefusal(Exception):
    """A documents write was refused; the message is shown to the user as it is."""


class DirectWriteRefused(DocumentsRefusal):
    """A documents row was written outside documents.services."""


class PermissionRefused(DocumentsRefusal):
    """The acting user may not do this."""


class TransitionRefused(DocumentsRefusal):
    """The row is not in a state that allows this change."""


class SamePersonRefused(DocumentsRefusal):
    """The two-person rule: the approver may not also publish."""


class DeployModeRefused(DocumentsRefusal, DeployModeActive):
    """Deploy mode is on: documents do not change until it is off.

    A DeployModeActive too, so that deployguard's middleware answers a request that raced
    the switch (let through while off, refused here) with its 503, not a 500.
    """

    def __init__(self, message: str, status: DeployModeStatus) -> None:
        Exception.__init__(self, message)
        self.action = message
        self.status = status


class RuleRefused(DocumentsRefusal):
    """The row is not legitimate production data: it breaks error-level integrity rules."""

    def __init__(self, message: str, breaches: list[Any]) -> None:
        super().__init__(message)
        self.breaches = breaches


class ReasonRequired(DocumentsRefusal):
    """The change needs a reason for the audit trail."""
