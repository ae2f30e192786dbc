"""The deploy-mode switch: the one reader of the shared state, and what follows it."""

from __future__ import annotations

import pytest
from django.db import connection

from deployguard import freeze, state


@pytest.mark.postgresql
def test_after_a_restore_the_triggers_follow_the_state_row(transactional_db, outsider):
    tables = freeze.freezable_tables(connection)
    freeze.freeze(connection, tables, lock_timeout=5)  # as a backup taken during a deploy brings back

    assert state.match_freeze() == f"deploy mode is off: {len(tables)} trigger(s) disabled"
    outsider.execute("UPDATE documents_submission SET title = title WHERE false")  # not refused
    assert freeze.frozen_tables(connection) == dict.fromkeys(tables, False)
