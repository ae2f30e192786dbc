"""The refusal: every message says what was refused, why, and how to get out of it."""

from __future__ import annotations

import pytest

from deployguard import exceptions
from deployguard.exceptions import DeployModeActive, DeployModeAlreadyOn
from deployguard.status import DeployModeStatus


@pytest.mark.parametrize(
    ("source", "way_out"),
    [
        ("database", exceptions.WAY_OUT_DATABASE),
        ("environment", exceptions.WAY_OUT_ENVIRONMENT),
        ("process", exceptions.WAY_OUT_PROCESS),
        ("unreadable", exceptions.WAY_OUT_UNREADABLE),
    ],
)
def test_each_refusal_names_the_way_out_for_where_deploy_mode_came_from(source, way_out):
    status = DeployModeStatus(enabled=True, source=source, reason="Release 42", changed_by="ops@host")

    refusal = DeployModeActive('INSERT on "auth_group"', status)

    assert str(refusal) == exceptions.REFUSED.format(
        action='INSERT on "auth_group"', how=status.describe(), way_out=way_out
    )
    assert (refusal.action, refusal.status) == ('INSERT on "auth_group"', status)


def test_switching_on_twice_says_who_holds_it_and_how_to_turn_it_off():
    status = DeployModeStatus(enabled=True, source="database", reason="Release 42", changed_by="ops@host")

    refusal = DeployModeAlreadyOn(status)

    assert str(refusal) == (
        f"Deploy mode is already on. {status.describe()} If that deploy is over, run "
        "`manage.py deploy_mode off` first."
    )
