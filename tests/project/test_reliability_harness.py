"""The reliability suite's measuring tools can see what they claim to measure."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from django.db import connection

from documents import services
from tests.reliability import render
from tests.reliability.conftest import Recorder
from tests.reliability.rows import compare, row_hashes


def test_compare_counts_a_changed_row_as_one_lost_and_one_added():
    before = {"t": Counter({1: 1, 2: 2}), "u": Counter({5: 1})}
    after = {"t": Counter({1: 1, 2: 1, 3: 1}), "u": Counter({5: 1})}

    changes = compare(before, after)

    assert (changes.lost, changes.added, changes.by_table) == (1, 1, {"t": (1, 1)})
    assert compare(before, after, ignore=frozenset({"t"})).by_table == {}


def test_row_hashes_see_a_submission_and_its_history(editor):
    before = row_hashes()

    services.create_submission(actor=editor, ml_number="ML-009", title="Seen", submitted_by="Ann")

    changes = compare(before, row_hashes())
    assert changes.lost == 0
    assert changes.by_table["documents_submission"] == (0, 1)
    assert changes.by_table["documents_historicalsubmission"] == (0, 1)


def test_recorder_fails_the_test_when_a_row_was_added(request, tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv("RELIABILITY_RESULTS", str(results))
    record = Recorder(request.node)
    added = compare({"t": Counter()}, {"t": Counter({7: 1})})

    with pytest.raises(AssertionError, match="0 rows lost, 1 added"):
        record("a stray row", attempts=1, writes_refused=0, changes=added, exit_status=0)

    (line,) = results.read_text().splitlines()
    assert json.loads(line) | {"seconds": 0} == {
        "kind": "scenario", "scenario": "a stray row", "attempts": 1, "writes_refused": 0,
        "rows_lost": 0, "rows_added": 1, "exit_status": 0, "seconds": 0,
        "database": connection.vendor,
        "test": request.node.nodeid, "details": {},
    }  # fmt: skip


def test_render_summarises_scenarios_and_guarantees_per_database():
    records = [
        {"kind": "test", "database": "sqlite", "test": "tests/reliability/test_a.py::test_x",
         "guarantee": "Nothing lands", "outcome": "passed", "when": "call"},
        {"kind": "scenario", "database": "sqlite", "test": "tests/reliability/test_a.py::test_x",
         "scenario": "incident", "attempts": 8, "writes_refused": 8, "rows_lost": 0, "rows_added": 0,
         "exit_status": 1, "seconds": 3.5, "details": {"p99_ms": 12}},
    ]  # fmt: skip

    text = render.render(records)

    assert "| sqlite | 1 | 0 | 0 | 1 | 0 | 0 |" in text
    assert "| incident | 8 | 8 | 0 | 0 | 1 | 3.5 | p99_ms 12 |" in text
    assert "| Nothing lands | `tests/reliability/test_a.py::test_x` | passed |" in text
