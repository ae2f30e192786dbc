"""Provenance where admins look at rows: an integrity badge on the changelist, a panel on the
change page (where the row came from, what it breaks now, which fields differ from its last
record), and history pages that only read.

`ProvenanceAdminMixin` goes first in a ModelAdmin's bases, before simple-history's admin;
add "integrity" to `list_display` for the badge. It works for any model with integrity rules
registered with deployguard and simple-history records; it knows nothing of the app.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from simple_history.template_utils import HistoricalRecordContextHelper

from deployguard.integrity import (
    Rule,
    broken_by_row,
    default_registry,
    describe_origin,
    flag_rows,
    history_model,
)

EMPTY = "—"
RECORD_TEMPLATE = "admin/deployguard/provenance/history_record.html"
# What a history record adds to the row's own fields: not part of the row's values.
HISTORY_FIELDS = frozenset(
    {"history_id", "history_date", "history_change_reason", "history_type", "history_user",
     "history_origin", "history_deploy_id", "history_relation"}
)  # fmt: skip


def display_value(field: models.Field[Any, Any], value: Any) -> str:
    """A stored value as an admin reads it: choices by label, related rows by name, local times."""
    if value is None or value == "":
        return EMPTY
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(field, models.ForeignKey):
        related = field.related_model._base_manager.filter(pk=value).first()
        return str(related) if related is not None else f"#{value} (no longer exists)"
    if isinstance(value, datetime.datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return formats.date_format(value, "DATETIME_FORMAT")
    return str(value)


def row_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The fields a history record keeps of a row: the concrete ones, primary key aside."""
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def stored(row: models.Model, field: models.Field[Any, Any]) -> Any:
    return getattr(row, field.attname)


@dataclass(frozen=True)
class Difference:
    field: str
    recorded: str
    now: str


def differences(row: models.Model, record: models.Model | None) -> list[Difference]:
    """Fields whose value in the row is not the one its latest history record holds."""
    if record is None:
        return []
    found = []
    for field in row_fields(type(row)):
        if not hasattr(record, field.attname):
            continue
        if stored(row, field) != getattr(record, field.attname):
            found.append(
                Difference(
                    str(field.verbose_name),
                    display_value(field, getattr(record, field.attname)),
                    display_value(field, stored(row, field)),
                )
            )
    return found


def provenance(model: type[models.Model], row: models.Model) -> dict[str, Any]:
    """Everything the change page's panel shows about one row: a handful of queries."""
    history = history_model(model)
    records = history._base_manager.filter(id=row.pk) if history is not None else None
    first = (
        records.order_by("history_id").select_related("history_user").first() if records is not None else None
    )
    latest = records.order_by("-history_id").first() if records is not None else None
    quarantine = default_registry.quarantines.get(model)
    return {
        "first": first,
        "first_described": describe_record(first),
        "records": records.count() if records is not None else 0,
        "latest": latest,
        "broken": broken_by_row(model, row.pk),
        "differences": differences(row, latest),
        "quarantined": bool(
            quarantine and model._base_manager.filter(quarantine.is_quarantined(), pk=row.pk).exists()
        ),
    }


def describe_record(record: models.Model | None) -> str:
    if record is None:
        return describe_origin({"history": "none", "origin": None, "deploy_id": None, "user": None})
    user = getattr(record, "history_user", None)
    return describe_origin(
        {
            "history": "created" if record.history_type == "+" else "first record is a change",
            "user": user.get_username() if user is not None else None,
            "origin": getattr(record, "history_origin", "") or None,
            "deploy_id": getattr(record, "history_deploy_id", "") or None,
        }
    )


class HumanHistoryContext(HistoricalRecordContextHelper):
    """The history list's "Changes" column in human terms: no "Deleted user (pk=None)", local times."""

    def prepare_delta_change_value(self, change: Any, value: Any) -> Any:
        field = self.model._meta.get_field(change.field)
        if isinstance(field, models.ManyToManyField):
            return super().prepare_delta_change_value(change, value)
        if isinstance(field, models.ForeignKey) and hasattr(value, "pk"):
            value = value.pk  # a related row, or simple-history's DeletedObject for one that is gone
        return display_value(field, value)


class ProvenanceAdminMixin:
    """The badge, the panel and read-only history records, for a SimpleHistoryAdmin subclass."""

    model: type[models.Model]
    admin_site: admin.AdminSite

    @admin.display(description="integrity")
    def integrity(self, obj: models.Model) -> str:
        flags: dict[str, Any] = getattr(obj, "_deployguard_integrity", {})
        badges = []
        if flags.get("quarantined"):
            badges.append(("error", "quarantined", "Put aside by a scrub run: not shown to readers"))
        for rule in flags.get("broken", ()):
            badges.append((rule.severity, rule.id.split(".")[-1], f"{rule.id}: {rule.description}"))
        if not badges:
            return format_html('<span class="ops-badge ok" title="{}">ok</span>', "Breaks no integrity rule")
        return format_html_join(" ", '<span class="ops-badge {}" title="{}">{}</span>',
                                ((kind, title, label) for kind, label, title in badges))  # fmt: skip

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)  # type: ignore[misc]
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None and "integrity" in changelist.list_display:
            annotate_integrity(self.model, list(changelist.result_list))
        return response

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        obj = kwargs.get("obj")
        if obj is not None and obj.pk is not None:
            opts = self.model._meta
            context["provenance"] = provenance(self.model, obj)
            context["provenance_history_url"] = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_history", args=[obj.pk]
            )
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc]

    def get_historical_record_context_helper(self, request: HttpRequest, historical_record: Any) -> Any:
        return HumanHistoryContext(self.model, historical_record)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> HttpResponse:
        """One history record as text: who, when, how, its values, and what it changed."""
        opts = self.model._meta
        history = history_model(self.model)
        if history is None:
            raise Http404
        record = get_object_or_404(
            history._base_manager, **{opts.pk.attname: unquote(object_id), "history_id": version_id}
        )
        if not self.has_view_history_or_change_history_permission(request, record.instance):  # type: ignore[attr-defined]
            raise PermissionDenied
        previous = (
            history._base_manager.filter(id=record.id, history_id__lt=record.history_id)
            .order_by("-history_id")
            .first()
        )
        values = []
        for field in row_fields(self.model):
            if not hasattr(record, field.attname):
                continue
            before = display_value(field, getattr(previous, field.attname)) if previous is not None else None
            now = display_value(field, getattr(record, field.attname))
            values.append(
                {
                    "field": str(field.verbose_name),
                    "value": now,
                    "changed": previous is not None and before != now,
                    "before": before,
                }
            )
        url = f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{opts.verbose_name.capitalize()} “{record.instance}” as recorded on "
            f"{display_value(history._meta.get_field('history_date'), record.history_date)}",
            "opts": opts,
            "record": record,
            "action": {"+": "created", "~": "changed", "-": "deleted"}.get(
                record.history_type, record.history_type
            ),
            "described": describe_record(record) if record.history_type == "+" else None,
            "values": values,
            "first_record": previous is None,
            "history_url": reverse(f"{url}_history", args=[record.id]),
            "change_url": reverse(f"{url}_change", args=[record.id]),
            "changelist_url": reverse(f"{url}_changelist"),
            "object_id": record.id,
            "original": record.instance,
            **(extra_context or {}),
        }
        return TemplateResponse(request, RECORD_TEMPLATE, context)


def annotate_integrity(model: type[models.Model], rows: list[models.Model]) -> None:
    """Attach to each row of a changelist page the rules it breaks and whether it is quarantined.

    Two queries for the page, whatever the table's size: the rules are evaluated over the
    page's primary keys only.
    """
    if not rows:
        return
    pks = [row.pk for row in rows]
    rules: dict[str, Rule] = {
        rule.id: rule for rule in default_registry.rules.values() if rule.model is model
    }
    broken = flag_rows(list(rules.values()), model, pks=pks) if rules else {}
    quarantine = default_registry.quarantines.get(model)
    quarantined = (
        set(model._base_manager.filter(quarantine.is_quarantined(), pk__in=pks).values_list("pk", flat=True))
        if quarantine
        else set()
    )
    for row in rows:
        row._deployguard_integrity = {  # type: ignore[attr-defined]
            "broken": [rules[rule_id] for rule_id in broken.get(row.pk, ())],
            "quarantined": row.pk in quarantined,
        }
