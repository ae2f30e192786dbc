"""Deploy mode and the write guard: `is_deploy_mode()`, `allow_writes(reason)`, `DeployModeActive`."""

from __future__ import annotations

from deployguard import state
from deployguard.allowances import allow_writes, writes_allowed
from deployguard.exceptions import DeployModeActive
from deployguard.state import is_deploy_mode

__all__ = ["DeployModeActive", "allow_writes", "ensure_writable", "is_deploy_mode", "writes_allowed"]


def ensure_writable(action: str) -> None:
    """Raise DeployModeActive if `action` would be refused now: for services that want to
    refuse before they start, rather than half way through."""
    if writes_allowed():
        return
    status = state.current()
    if status.enabled:
        raise DeployModeActive(action, status)
