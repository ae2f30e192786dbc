"""Fixtures shared by every test."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import EditorFactory, SuperuserFactory


@pytest.fixture
def editor(db):
    return EditorFactory()


@pytest.fixture
def superuser(db):
    return SuperuserFactory()


@pytest.fixture(autouse=True)
def _deploy_mode_starts_off():
    """Every test starts with deploy mode off as this process sees it, without a query for it
    (the test database starts with it off); switching it through deployguard updates this."""
    from deployguard import state

    state.prime_cache(state.DeployModeStatus(enabled=False, source="database"))
    yield
    state.clear_cache()


@pytest.fixture(autouse=True, scope="session")
def _flushing_passes_the_seal():
    """Transactional tests end by flushing every table, documents' sealed ones included: a test
    database's teardown, not application code, so it runs as the deploy pipeline's restore does."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    import deployguard

    flush = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with deployguard.allow_writes("the test database is flushed between tests"):
            return flush(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = flush


@pytest.fixture
def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    from django.db import connections

    if connections["default"].vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with DATABASE_URL=postgres://…")
    for item in items:
        if "postgresql" in item.keywords:
            item.add_marker(skip)
