"""`{% deploy_mode_banner %}`: the admin's warning while deploy mode is on."""

from __future__ import annotations

from typing import Any

from django import template

from deployguard import state

register = template.Library()


@register.inclusion_tag("deployguard/banner.html")
def deploy_mode_banner() -> dict[str, Any]:
    # One state read per admin page, usually answered by the process's cache.
    return {"status": state.current()}
