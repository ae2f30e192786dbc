"""Which tables deploy mode protects: every table but deployguard's own and an explicit allowlist.

Protected is the default, so a table created tomorrow is protected today. Two narrower lists
sit beside it: the deploy-mode switch's own tables (deployguard's, yet written in deploy mode
only by the switch itself) and the bookkeeping tables `migrate` writes rows into, which a
deploy's schema changes may write.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from django.apps import apps
from django.conf import settings

from deployguard import conf
from deployguard.sql_writes import UNKNOWN_TABLE

SWITCH_TABLES = frozenset(
    {
        "deployguard_deploymodestate",
        "deployguard_historicaldeploymodestate",
        "deployguard_deployrecord",
        "deployguard_historicaldeployrecord",
        "deployguard_scrubrun",
        "deployguard_scrubrow",
    }
)
"""deployguard's own records that say what happened: the deploy-mode switch, deploys and scrub
runs, with their history. Written in deploy mode only by deployguard's own code
(allowances.own_records(): state.enable()/disable(), deploy_safe's record, scrub); the guard
refuses any other write to them, and the database's freeze covers them too. Not in
protected_tables(): backups leave them alone. (Job records and stored integrity counts are
written by workers and the admin in deploy mode: not here.)"""

DEFAULT_MIGRATE_WRITABLE_TABLES = ("django_migrations", "django_content_type", "auth_permission")


@lru_cache(maxsize=1)
def _exempt() -> tuple[frozenset[str], tuple[str, ...]]:
    own = apps.get_app_config("deployguard")
    tables = {model._meta.db_table.lower() for model in own.get_models(include_auto_created=True)}
    tables |= {name.lower() for name in conf.get("DEPLOYGUARD_WRITABLE_TABLES")}
    # Index, sequence and constraint names (and tables not yet created) of deployguard's own.
    prefixes = (f"{own.label.lower()}_",)
    return frozenset(tables), prefixes


_protected: dict[str, bool] = {}


def is_protected(table: str) -> bool:
    """Whether deploy mode freezes `table` (lower case; UNKNOWN_TABLE is protected)."""
    known = _protected.get(table)
    if known is None:
        known = _protected[table] = _is_protected(table)
    return known


def _is_protected(table: str) -> bool:
    if table == UNKNOWN_TABLE:
        return True
    tables, prefixes = _exempt()
    name = table.removeprefix("new__")  # SQLite rebuilds a table as new__<name> when altering it
    return name not in tables and not name.startswith(prefixes)


def protected_tables(tables: Iterable[str]) -> set[str]:
    """The protected ones among `tables` (names as the database spells them)."""
    return {table for table in tables if is_protected(table.lower())}


def migrate_writable_tables() -> frozenset[str]:
    """Bookkeeping tables `migrate` writes rows into: DEPLOYGUARD_MIGRATE_WRITABLE_TABLES."""
    names = getattr(settings, "DEPLOYGUARD_MIGRATE_WRITABLE_TABLES", DEFAULT_MIGRATE_WRITABLE_TABLES)
    return frozenset(name.lower() for name in names)


def clear_caches() -> None:
    """Forget what was worked out from the settings: after a DEPLOYGUARD_* setting changed."""
    _exempt.cache_clear()
    _protected.clear()
