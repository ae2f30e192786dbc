"""Which tables deploy mode protects: everything but deployguard's own and the allowlist."""

from __future__ import annotations

from deployguard import tables
from deployguard.sql_writes import UNKNOWN_TABLE


def test_deployguard_tables_and_the_allowlist_are_not_protected_and_everything_else_is(settings):
    assert not tables.is_protected("deployguard_deploymodestate")
    assert not tables.is_protected("new__deployguard_deploymodestate")  # SQLite's table rebuild
    assert not tables.is_protected("django_session")
    assert tables.is_protected("auth_group")
    assert tables.is_protected("a_table_created_tomorrow")
    assert tables.is_protected(UNKNOWN_TABLE)
    settings.DEPLOYGUARD_WRITABLE_TABLES = ["auth_group"]
    assert not tables.is_protected("auth_group")
    assert tables.is_protected("django_session")
