"""Query budgets for the operations pages: a fixed number of queries, whatever the tables hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deployguard import integrity_runs, scrub, state
from deployguard.integrity import default_registry
from tests.deployguard.admin_support import ACTIVITY, DEPLOY_MODE, DEPLOYS, INTEGRITY, QUARANTINE
from tests.deployguard.test_activity import plant
from tests.documents.fakes import raw_insert_submission
from tests.factories import DeployRecordFactory

pytestmark = pytest.mark.django_db

# The admin's own queries (session, user, and the user's and groups' permissions: 4) are part of
# each budget, and so is every read of the deploy-mode state (no cache here: worst case).
BUDGETS = {
    "deploy mode": 10,  # PostgreSQL asks pg_locks whether a deploy holds its lock
    "deploys": 7,
    "deploy": 6,
    "integrity": 6,
    "quarantine runs": 7,
    "quarantine run": 9,
    "restore confirmation": 9,
    "activity": 10,
}


def grow(size: int, actor) -> None:
    """`size` more of everything the pages read: documents with history, deploys, switches, runs."""
    number = raw_insert_submission  # rows without history break rules: the quarantine takes them
    for _ in range(size):
        DeployRecordFactory()
        state.enable(reason="Release", changed_by="ops@host")
        state.disable(changed_by="ops@host")
    base = 900 + grow.calls * 100
    for index in range(size):
        number(f"ML-{base + index}", submitted_by="Test User")
    plant(size, label="command:seed_demo", at=state.timezone.now(), actor=actor)
    scrub.quarantine(scrub.select_rows(default_registry.select()))
    integrity_runs.record(computed_by="pytest")
    grow.calls += 1


grow.calls = 0


def pages() -> dict[str, Callable[[], str]]:
    from deployguard.models import DeployRecord
    from deployguard.models_integrity import ScrubRun

    run = ScrubRun.objects.order_by("-created_at").first()
    return {
        "deploy mode": lambda: DEPLOY_MODE,
        "deploys": lambda: DEPLOYS,
        "deploy": lambda: f"{DEPLOYS}{DeployRecord.objects.first().pk}/change/",
        "integrity": lambda: INTEGRITY,
        "quarantine runs": lambda: QUARANTINE,
        "quarantine run": lambda: f"{QUARANTINE}{run.pk}/",
        "restore confirmation": lambda: f"{QUARANTINE}{run.pk}/restore/",
        "activity": lambda: ACTIVITY,
    }


def queries(client, url: str, budget: Callable[[int], Any]) -> int:
    """The queries one GET of `url` makes, asserted within `budget` (django_assert_max_num_queries)."""
    state.clear_cache()
    with budget() as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def test_every_operations_page_stays_within_its_budget_at_any_table_size(
    operator_client, superuser, settings, django_assert_max_num_queries
):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    grow(2, superuser)
    small = {
        name: queries(operator_client, url(), lambda name=name: django_assert_max_num_queries(BUDGETS[name]))
        for name, url in pages().items()
    }
    grow(40, superuser)
    large = {
        name: queries(operator_client, url(), lambda name=name: django_assert_max_num_queries(BUDGETS[name]))
        for name, url in pages().items()
    }

    assert large == small
