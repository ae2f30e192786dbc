"""Fixtures for the deploy package's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployguard.deploy.steps import Alongside


@pytest.fixture
def alongside() -> Iterator[Alongside]:
    """Work on threads beside the test's, as deploy_safe runs it; shut down afterwards."""
    running = Alongside("default")
    yield running
    running.shutdown()
