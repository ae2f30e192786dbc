"""Deploy mode belongs to the running deploy: while another process holds the deploy lock, switching
it off is refused by the command, the endpoint and in-process calls; `--force` is the logged override."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.urls import reverse

from deployguard import ownership, state
from deployguard.deploy import lock
from deployguard.models import DeployModeState
from tests.utils import run_command

TOKEN = "t" * 40


@pytest.fixture
def held_elsewhere(db, tmp_path, monkeypatch, fast_switch) -> Iterator[str]:
    """Deploy mode on for deploy d-1, whose lock is held as if by another process."""
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    state.enable(reason="deploy_safe d-1", changed_by="ops@host", deploy_id="d-1")
    deploy_lock = lock.DeployLock()
    assert deploy_lock.acquire("d-1", "ops@host")
    ownership.mark_held("default", False)  # the deploy is another process's, not this one's
    yield ownership.deploy_holding("default")
    deploy_lock.release()


def test_the_deploy_holding_the_lock_is_named(held_elsewhere):
    assert held_elsewhere.startswith("deploy d-1, started ")
    assert held_elsewhere.endswith(" by ops@host")


def test_deploy_mode_off_is_refused_while_a_deploy_holds_it_and_says_how_to_end_it(held_elsewhere):
    _, stderr, status = run_command("deploy_mode", "off")

    assert status == 6
    assert ownership.HELD.format(holder=held_elsewhere) in stderr
    assert state.current().enabled


def test_a_forced_switch_off_is_the_logged_override(held_elsewhere, caplog):
    _, _, status = run_command("deploy_mode", "off", "--force", "--reason", "ops override")

    assert status == 0
    assert not state.current().enabled
    last = DeployModeState.history.order_by("-history_date").first()
    assert (
        last.history_change_reason
        == f"Deploy mode off: FORCED off while {held_elsewhere} held it: ops override"
    )
    assert "Deploy mode FORCED off by " in caplog.text


def test_the_endpoint_refuses_to_switch_off_while_a_deploy_holds_it(held_elsewhere, client, settings):
    settings.DEPLOYGUARD_TOKEN = TOKEN

    response = client.post(
        reverse("deployguard:mode"), {"mode": "off"}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )  # fmt: skip

    assert response.status_code == 409
    assert response.json()["error"] == ownership.HELD.format(holder=held_elsewhere)
    assert state.current().enabled


def test_code_in_another_process_calling_the_state_functions_is_refused(held_elsewhere):
    with pytest.raises(ownership.DeployModeHeld):
        state.switch_off(changed_by="a migration", reason="sneaky")

    assert state.current().enabled


def test_the_deploy_that_holds_the_lock_switches_deploy_mode_off_itself(
    db, tmp_path, monkeypatch, fast_switch
):
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    state.enable(reason="deploy_safe d-2", changed_by="ops@host", deploy_id="d-2")
    deploy_lock = lock.DeployLock()
    assert deploy_lock.acquire("d-2", "ops@host")
    try:
        _, was_on = state.disable(changed_by="ops@host", reason="deploy_safe d-2 done")
    finally:
        deploy_lock.release()

    assert was_on
    assert ownership.deploy_holding("default") == ""
