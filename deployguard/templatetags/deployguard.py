"""Deploy mode in templates: the admin's banner, the state for disabling forms, human times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from deployguard import humanize, state
from deployguard.middleware import PAUSED_MESSAGES
from deployguard.state import DeployModeStatus

register = template.Library()

VIEW_OPERATIONS = "deployguard.view_operations"


def sees_who_switched(user: Any) -> bool:
    """Who switched deploy mode (an account, a host) is for logged-in staff only."""
    return bool(user is not None and user.is_active and user.is_staff)


@register.inclusion_tag("deployguard/banner.html", takes_context=True)
def deploy_mode_banner(context: template.Context) -> dict[str, Any]:
    # One state read per admin page, usually answered by the process's cache.
    status = state.current()
    user = context.get("user")
    private = sees_who_switched(user)
    return {
        "status": status,
        "description": humanize.deploy_mode(status, private=private),
        "link_to_operations": private and user.has_perm(VIEW_OPERATIONS),
    }


@register.simple_tag
def deploy_mode_status() -> DeployModeStatus:
    """`{% deploy_mode_status as deploy_mode %}`: the state, to disable forms while it is on."""
    return state.current()


@register.simple_tag
def paused_message(kind: str) -> str:
    """`{% paused_message "save" %}`: why a form is disabled while deploy mode is on."""
    return PAUSED_MESSAGES[kind]


@register.filter
def human_when(moment: datetime | None) -> str:
    """`{{ run.created_at|human_when }}`: "14:02 UTC (12 minutes ago)"."""
    return humanize.when(moment) if moment else "—"


@register.filter
def human_span(seconds: float | None) -> str:
    """`{{ 591|human_span }}`: "about 10 minutes"."""
    return "—" if seconds is None else humanize.span(float(seconds))


@register.filter
def verbose_plural(model: Any) -> str:
    """`{{ rule.model|verbose_plural }}`: "submissions"."""
    return str(model._meta.verbose_name_plural)
