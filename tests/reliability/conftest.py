"""The reliability suite's results: every test under tests/reliability is marked `reliability`,
and when RELIABILITY_RESULTS names a file, each test's outcome and each scenario it records
are appended to it as JSON lines; `make reliability` renders them into docs/RELIABILITY.md.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.reliability.rows import RowChanges

HERE = Path(__file__).resolve().parent


def _append(record: dict[str, Any]) -> None:
    path = os.environ.get("RELIABILITY_RESULTS")
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # One short line per write, opened for appending: safe with pytest-xdist's workers.
    with open(path, "a", encoding="utf-8") as results:
        results.write(json.dumps(record, sort_keys=True) + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # tryfirst: before `-m reliability` selects on the marker.
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.reliability)


def guarantee_of(item: pytest.Item) -> str:
    """The first line of the test's docstring: the guarantee it proves."""
    doc = inspect.getdoc(getattr(item, "function", None)) or ""
    return doc.splitlines()[0] if doc else item.name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if "reliability" in item.keywords and (report.when == "call" or report.outcome != "passed"):
        _append(
            {
                "kind": "test",
                "database": connection.vendor,
                "test": item.nodeid,
                "guarantee": guarantee_of(item),
                "outcome": report.outcome,
                "when": report.when,
            }
        )
    return report


@dataclass
class Scenario:
    """One row of docs/RELIABILITY.md's results table."""

    scenario: str
    attempts: int
    writes_refused: int
    rows_lost: int
    rows_added: int
    exit_status: int | str
    seconds: float
    database: str
    test: str
    details: dict[str, Any] = field(default_factory=dict)


class Recorder:
    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.started = time.perf_counter()
        self.scenarios: list[Scenario] = []

    def __call__(
        self,
        scenario: str,
        *,
        attempts: int,
        writes_refused: int,
        changes: RowChanges,
        exit_status: int | str,
        seconds: float | None = None,
        **details: Any,
    ) -> Scenario:
        """Record a scenario's outcome, then fail the test if a row was lost or added.

        `changes` comes from tests.reliability.rows.compare(), measured on the database the
        scenario ran against; `details` (latencies, request counts…) go into the results file.
        """
        row = Scenario(
            scenario=scenario,
            attempts=attempts,
            writes_refused=writes_refused,
            rows_lost=changes.lost,
            rows_added=changes.added,
            exit_status=exit_status,
            seconds=round(time.perf_counter() - self.started if seconds is None else seconds, 2),
            database=connection.vendor,
            test=self.item.nodeid,
            details=details,
        )
        self.scenarios.append(row)
        _append({"kind": "scenario", **asdict(row)})
        assert changes.lost == 0 and changes.added == 0, f"{scenario}: {changes}"
        return row


@pytest.fixture
def record_scenario(request) -> Recorder:
    """Call it once per scenario with its measured outcome; see Recorder.__call__."""
    return Recorder(request.node)
