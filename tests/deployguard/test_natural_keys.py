"""A model's declared natural key: how deployguard reads it, and what it refuses."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from deployguard.models_integrity import ScrubRun
from deployguard.natural_keys import (
    AmbiguousRow,
    RowNotFound,
    check_natural_keys,
    natural_key_field,
    natural_keys,
    resolve,
)
from documents.models import PublishedDraft, Submission
from tests.factories import SubmissionFactory
from tests.utils import rewriting_history


def test_the_declared_field_names_rows_in_one_query(db, django_assert_num_queries):
    rows = [SubmissionFactory() for _ in range(3)]
    with django_assert_num_queries(1):
        keys = natural_keys(Submission, [row.pk for row in rows] + [99999])
    assert keys == {row.pk: row.ml_number for row in rows}
    assert natural_key_field(PublishedDraft) == "name"


def test_a_model_without_a_natural_key_is_named_by_its_pk_alone(db):
    assert natural_key_field(ScrubRun) is None
    assert natural_keys(ScrubRun, [1]) == {}
    with pytest.raises(RowNotFound, match="declares no natural key"):
        resolve(ScrubRun, "1", by="key")


@pytest.mark.parametrize(
    ("declared", "message"),
    [("nothing", "which is not a field"), ("title", "which is not unique")],
)
def test_a_declaration_that_cannot_name_one_row_is_refused(monkeypatch, declared, message):
    monkeypatch.setattr(Submission, "natural_key_field", declared)
    with pytest.raises(ImproperlyConfigured, match=message):
        natural_key_field(Submission)


def test_resolve_reads_a_key_the_row_had_from_its_history(db):
    row = SubmissionFactory()
    with rewriting_history("a test gives a row an older key in its history"):
        Submission.history.filter(id=row.pk).update(ml_number="ML-777")
    assert resolve(Submission, "ML-777") == row.pk
    assert resolve(Submission, row.ml_number) == row.pk
    assert resolve(Submission, str(row.pk), by="pk") == row.pk
    with pytest.raises(RowNotFound):
        resolve(Submission, row.ml_number, by="pk")
    assert issubclass(AmbiguousRow, LookupError)


def test_a_declaration_that_cannot_name_one_row_fails_the_system_check(monkeypatch):
    assert check_natural_keys() == []
    monkeypatch.setattr(Submission, "natural_key_field", "title")
    [error] = check_natural_keys()
    assert (error.id, error.obj) == ("deployguard.E030", Submission)
    assert error.msg == (
        "documents.Submission.natural_key_field names 'title', which is not unique: "
        "a natural key must name one row."
    )


def test_a_key_typed_in_another_case_or_with_spaces_still_names_its_row(db):
    row = SubmissionFactory()
    assert resolve(Submission, f"  {row.ml_number.lower()} ") == row.pk
