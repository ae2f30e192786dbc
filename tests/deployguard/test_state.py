"""The deploy-mode switch: the one reader of the shared state, and what follows it."""

from __future__ import annotations

import pytest
from django.db import connection

from deployguard import freeze, state
from deployguard.models import DeployModeState


@pytest.mark.postgresql
def test_after_a_restore_the_triggers_follow_the_state_row(transactional_db, outsider):
    tables = freeze.freezable_tables(connection)
    freeze.freeze(connection, tables, lock_timeout=5)  # as a backup taken during a deploy brings back

    assert state.match_freeze() == f"deploy mode is off: {len(tables)} trigger(s) disabled"
    outsider.execute("UPDATE documents_submission SET title = title WHERE false")  # not refused
    assert freeze.frozen_tables(connection) == dict.fromkeys(tables, False)


def test_a_state_row_deleted_after_deploy_mode_was_ever_switched_reads_as_on_state_lost(
    transactional_db, fast_switch
):
    assert state.current().enabled is False  # never switched: no row is plain "off"
    state.enable(reason="Release 42", changed_by="ops@deploy-host")
    state.disable(changed_by="ops@deploy-host")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM deployguard_deploymodestate")  # deploy mode is off: not refused
    state.clear_cache()

    status = state.current()
    assert (status.enabled, status.source) == (True, "lost")
    assert status.describe().startswith("Deploy mode is on, state lost: its state row is missing")
    assert status.describe_public() == "Deploy mode is on: its state was lost, so writes are refused."

    _, was_on = state.disable(changed_by="ops@deploy-host", reason="put the state back")
    assert was_on is True
    assert list(DeployModeState.objects.values_list("enabled", flat=True)) == [False]
    assert state.current().enabled is False
