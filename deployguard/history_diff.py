"""Which fields of a row differ from its latest history record: what a change without a record changed.

A rule such as "row differs from its latest history record" says that a row was changed around
the ORM; this says how: each differing field with the recorded value and the value now, so an
operator can put the recorded values back (scrub_fake_data --repair) instead of quarantining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models

from deployguard.integrity import history_model

# Columns simple-history adds to every record; they are not the row's fields.
HISTORY_COLUMNS = frozenset(
    {"history_id", "history_date", "history_change_reason", "history_type", "history_user"}
)


@dataclass(frozen=True)
class Difference:
    field: str
    recorded: Any
    now: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.recorded!r} recorded, {self.now!r} now"


def compared_fields(model: type[models.Model]) -> list[str]:
    """The attnames a row and its history records both have (the row's own concrete fields)."""
    history = history_model(model)
    if history is None:
        return []
    recorded = {field.attname for field in history._meta.concrete_fields}
    return [
        field.attname
        for field in model._meta.concrete_fields
        if field.attname in recorded and field.name not in HISTORY_COLUMNS and not field.primary_key
    ]


def latest_records(model: type[models.Model], pks: list[Any]) -> dict[Any, dict[str, Any]]:
    """{pk: the latest history record's values of compared_fields, and its history_id}: one query."""
    history = history_model(model)
    fields = compared_fields(model)
    if history is None or not pks:
        return {}
    latest: dict[Any, dict[str, Any]] = {}
    for record in (
        history._base_manager.filter(id__in=pks)
        .order_by("id", "-history_id")
        .values("id", "history_id", *fields)
    ):
        latest.setdefault(record["id"], record)
    return latest


def differences(model: type[models.Model], pks: list[Any]) -> dict[Any, list[Difference]]:
    """{pk: the fields that differ from its latest history record} for rows that have one: two queries."""
    fields = compared_fields(model)
    latest = latest_records(model, list(pks))
    rows = model._base_manager.filter(pk__in=list(latest)).values("pk", *fields)
    found: dict[Any, list[Difference]] = {}
    for row in rows:
        record = latest[row["pk"]]
        differing = [Difference(f, record[f], row[f]) for f in fields if record[f] != row[f]]
        if differing:
            found[row["pk"]] = differing
    return found
