"""Baselines: saved row by row, and compared with the data by primary key, streamed."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from deployguard import baseline
from documents.models import PublishedDraft, Submission
from tests.documents.fakes import raw_update_submission
from tests.utils import behind_the_services


def raw_delete(pk: int) -> None:
    """Delete a submission behind the model layer, as a script would."""
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM documents_submission WHERE id = %s", [pk])


@pytest.fixture
def saved(db, tmp_path):
    from tests.factories import SubmissionFactory

    kept, gone, changed = (SubmissionFactory(ml_number=f"ML-00{n}") for n in (1, 2, 3))
    path = tmp_path / "base.jsonl"
    baseline.save(path, [Submission])
    return path, kept, gone, changed


def test_a_baseline_is_a_header_then_one_line_a_row_in_primary_key_order(saved):
    path, kept, gone, changed = saved

    header, *rows = [json.loads(line) for line in path.read_text().splitlines()]

    assert (header["format"], header["version"], header["tables"]["documents.submission"]["count"]) == (
        baseline.FORMAT, baseline.VERSION, 3,
    )  # fmt: skip
    assert [(label, pk) for label, pk, _ in rows] == [
        ("documents.submission", s.pk) for s in (kept, gone, changed)
    ]


def test_the_comparison_names_rows_added_removed_and_changed_by_primary_key(saved):
    from tests.factories import SubmissionFactory

    path, _kept, gone, changed = saved
    raw_delete(gone.pk)
    raw_update_submission(changed.pk, title="Changed behind the baseline's back")
    added = SubmissionFactory(ml_number="ML-009")

    comparison = baseline.compare(path, [Submission, PublishedDraft])

    assert not comparison.ok
    [table] = comparison.tables
    assert (table.added.pks, table.removed.pks, table.changed.pks) == ([added.pk], [gone.pk], [changed.pk])
    assert (table.count_then, table.count_now) == (3, 3)
    assert comparison.untracked == ["documents.publisheddraft"]


def test_an_unchanged_database_compares_equal_without_listing_a_row(saved):
    path, *_ = saved

    comparison = baseline.compare(path, [Submission])

    assert comparison.ok
    assert comparison.as_dict()["tables"]["documents.submission"]["changed"] == {"count": 0, "pks": []}


def test_a_baseline_of_another_database_engine_or_a_corrupt_file_is_refused(saved, tmp_path):
    path, *_ = saved
    header, *rows = path.read_text().splitlines()
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([json.dumps({**json.loads(header), "vendor": "oracle"}), *rows]) + "\n")
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text(header + "\nnot json\n")

    with pytest.raises(baseline.BaselineError, match="was saved on oracle"):
        baseline.compare(other, [Submission])
    with pytest.raises(baseline.BaselineError, match="is corrupt: bad row line"):
        baseline.compare(corrupt, [Submission])
