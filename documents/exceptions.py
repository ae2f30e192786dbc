"""The refusals of the documents services; each message says what to do instead."""

from __future__ import annotations


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


class DeployModeRefused(DocumentsRefusal):
    """Deploy mode is on: documents do not change until it is off."""


class ReasonRequired(DocumentsRefusal):
    """The change needs a reason for the audit trail."""
