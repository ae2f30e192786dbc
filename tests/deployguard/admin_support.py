"""Fixtures and helpers for the operations pages' tests (tests/deployguard/test_admin_*.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import OperatorFactory, StaffFactory

DEPLOY_MODE = "/admin/deployguard/deploymodestate/"
SWITCH_ON = f"{DEPLOY_MODE}on/"
SWITCH_OFF = f"{DEPLOY_MODE}off/"
DEPLOYS = "/admin/deployguard/deployrecord/"
INTEGRITY = "/admin/deployguard/integrityrun/"
RECOUNT = f"{INTEGRITY}recount/"
QUARANTINE = "/admin/deployguard/scrubrun/"
ACTIVITY = "/admin/deployguard/operations/"


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(db) -> Any:
    """Staff with every operations permission."""
    return OperatorFactory(username="operator")


@pytest.fixture
def operator_client(operator) -> Client:
    return logged_in(operator)


@pytest.fixture
def viewer_client(db) -> Client:
    """Staff who may see the operations pages, and neither switch nor restore."""
    return logged_in(OperatorFactory(username="viewer", operations=("view_operations",)))


@pytest.fixture
def staff_client(db) -> Client:
    """Staff without any operations permission."""
    return logged_in(StaffFactory(username="plainstaff"))


def messages_of(response: Any) -> list[str]:
    """The messages the page a redirect led to shows (post with follow=True)."""
    assert response.redirect_chain, "post with follow=True to read the messages the next page shows"
    return [str(message) for message in response.context["messages"]]
