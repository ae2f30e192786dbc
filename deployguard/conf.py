"""Deployguard's settings, with their defaults, read at call time (never at import time)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # The database alias that holds the deploy-mode state shared by every process.
    "DEPLOYGUARD_DATABASE": "default",
    # How long a process trusts the state it read. `deploy_mode on` waits this long (plus
    # PROPAGATION_GRACE) before returning, so every process must use the same value.
    "DEPLOYGUARD_STATE_CACHE_SECONDS": 1.0,
    # Tables that stay writable in deploy mode, besides deployguard's own.
    "DEPLOYGUARD_WRITABLE_TABLES": ["django_session"],
    # Retry-After (seconds) on a 503 when the deploy's expected end is unknown or past.
    "DEPLOYGUARD_RETRY_AFTER": 120,
    # How long `deploy_mode on` waits for transactions that wrote before it to finish.
    "DEPLOYGUARD_DRAIN_TIMEOUT": 30.0,
    # Bearer token for POST /_deploy/mode; empty disables that endpoint.
    "DEPLOYGUARD_TOKEN": "",
    # The tables' owner's DATABASES entry (DEPLOYGUARD_OWNER_DATABASE_URL), for the commands
    # that act for the deploy pipeline (deployguard.roles); None: DATABASE_URL's role does all.
    "DEPLOYGUARD_OWNER_DATABASE": None,
}

# Extra wait on top of the cache lifetime, for a process that read "off" and is between
# its check and its statement when the cache runs out.
PROPAGATION_GRACE = 0.25


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def propagation_delay() -> float:
    """Seconds after a switch until every process has seen it."""
    ttl = float(get("DEPLOYGUARD_STATE_CACHE_SECONDS"))
    return ttl + PROPAGATION_GRACE if ttl > 0 else 0.0


def validate() -> None:
    """Raise ImproperlyConfigured naming the first deployguard setting that is unusable."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    ttl = get("DEPLOYGUARD_STATE_CACHE_SECONDS")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl <= 60:
        raise ImproperlyConfigured(
            f"DEPLOYGUARD_STATE_CACHE_SECONDS={ttl!r}: set a number of seconds from 0 to 60 (default 1)."
        )
    retry = get("DEPLOYGUARD_RETRY_AFTER")
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 1:
        raise ImproperlyConfigured(
            f"DEPLOYGUARD_RETRY_AFTER={retry!r}: set a whole number of seconds, 1 or more."
        )
    drain = get("DEPLOYGUARD_DRAIN_TIMEOUT")
    if isinstance(drain, bool) or not isinstance(drain, int | float) or drain <= 0:
        raise ImproperlyConfigured(f"DEPLOYGUARD_DRAIN_TIMEOUT={drain!r}: set a positive number of seconds.")
    tables = get("DEPLOYGUARD_WRITABLE_TABLES")
    if isinstance(tables, str) or not all(isinstance(name, str) for name in tables):
        raise ImproperlyConfigured(
            f"DEPLOYGUARD_WRITABLE_TABLES={tables!r}: set a list of table names, such as ['django_session']."
        )
    if not isinstance(get("DEPLOYGUARD_TOKEN"), str):
        raise ImproperlyConfigured("DEPLOYGUARD_TOKEN must be a string (empty disables POST /_deploy/mode).")
    alias = get("DEPLOYGUARD_DATABASE")
    if alias not in connections.settings:
        raise ImproperlyConfigured(
            f"DEPLOYGUARD_DATABASE={alias!r} is not in DATABASES ({', '.join(connections.settings)})."
        )
