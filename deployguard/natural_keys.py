"""Rows as operators name them: a model's natural key (an ML number, a draft name) beside its pk.

A model names its natural key by declaring `natural_key_field = "<field>"`, a field that
is unique on its own. deployguard asks the model and knows nothing of what the key means.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from django.apps import apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, ValidationError
from django.db import models

from deployguard.integrity import history_model

NATURAL_KEY_ATTRIBUTE = "natural_key_field"
By = Literal["auto", "pk", "key"]


class RowNotFound(LookupError):
    """Nothing is named by the text, neither as a primary key nor as a natural key."""


class AmbiguousRow(LookupError):
    """The text names one row by its primary key and another by its natural key."""


def natural_key_field(model: type[models.Model]) -> str | None:
    """The name of the field `model` declares as its natural key, or None."""
    name = getattr(model, NATURAL_KEY_ATTRIBUTE, None)
    if not name:
        return None
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        raise ImproperlyConfigured(
            f"{model._meta.label}.{NATURAL_KEY_ATTRIBUTE} names {name!r}, which is not a field."
        ) from None
    if not getattr(field, "unique", False):
        raise ImproperlyConfigured(
            f"{model._meta.label}.{NATURAL_KEY_ATTRIBUTE} names {name!r}, which is not unique: "
            "a natural key must name one row."
        )
    return name


def check_natural_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """deployguard.E030: every declared natural key names one unique field."""
    problems = []
    for model in apps.get_models():
        try:
            natural_key_field(model)
        except ImproperlyConfigured as error:
            problems.append(
                checks.Error(
                    str(error),
                    hint=f"Name a field declared unique=True, or remove {NATURAL_KEY_ATTRIBUTE}.",
                    obj=model,
                    id="deployguard.E030",
                )
            )
    return problems


def natural_keys(model: type[models.Model], pks: Iterable[Any]) -> dict[Any, str]:
    """{pk: natural key} for the rows of `model` that exist: one query (none without a key)."""
    pks = list(pks)
    name = natural_key_field(model)
    if name is None or not pks:
        return {}
    rows = model._base_manager.filter(pk__in=pks).values_list("pk", name)
    return {pk: str(key) for pk, key in rows}


def _by_key(model: type[models.Model], name: str, text: str) -> Any:
    """The pk of the row whose natural key is `text` (as typed, else in any case and without
    surrounding spaces, when that names one row), or of the deleted row that last had it."""
    history = history_model(model)
    for lookup, value in ((name, text), (f"{name}__iexact", text.strip())):
        pks = list(model._base_manager.filter(**{lookup: value}).values_list("pk", flat=True)[:2])
        if len(pks) == 1:
            return pks[0]
        if history is not None:
            records = history._base_manager.filter(**{lookup: value}).order_by("-history_id")
            ids = set(records.values_list("id", flat=True)[:100])
            if len(ids) == 1:
                return ids.pop()
    return None


def _by_pk(model: type[models.Model], text: str) -> Any:
    """`text` as a primary key of `model` that exists or existed (its history), or None."""
    try:
        pk = model._meta.pk.to_python(text)
    except ValidationError:
        return None
    if pk is None:
        return None
    if model._base_manager.filter(pk=pk).exists():
        return pk
    history = history_model(model)
    return pk if history is not None and history._base_manager.filter(id=pk).exists() else None


def resolve(model: type[models.Model], text: str, *, by: By = "auto") -> Any:
    """The primary key of the row `text` names: its pk or its natural key (`by` chooses).

    A row that was deleted is found through its history. RowNotFound when nothing matches;
    AmbiguousRow when `by` is "auto" and the text is one row's pk and another's natural key.
    """
    label = model._meta.label_lower
    name = natural_key_field(model)
    if by == "key" and name is None:
        raise RowNotFound(f"{label} declares no natural key: give its primary key.")
    as_key = _by_key(model, name, text) if name and by != "pk" else None
    as_pk = _by_pk(model, text) if by != "key" else None
    if as_key is not None and as_pk is not None and as_key != as_pk:
        raise AmbiguousRow(
            f"{text!r} is the primary key of one {label} and the "
            f"{model._meta.get_field(name).verbose_name} of another ({as_key}): "
            "pass --by pk or --by key."
        )
    found = as_key if as_key is not None else as_pk
    if found is None:
        key = str(model._meta.get_field(name).verbose_name) if name else ""
        what = {"pk": "primary key", "key": key, "auto": f"primary key or {key}" if name else "primary key"}
        raise RowNotFound(f"No {label} with {what[by]} {text!r}, and no history of one.")
    return found
