"""The changelist filter that shows the rows breaking the integrity rules, for any app's admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from deployguard.integrity import default_registry

ANY_ERROR = "errors"


class IntegrityListFilter(admin.SimpleListFilter):
    """Filter a changelist to the rows that break its model's rules, all errors or one rule."""

    title = "integrity"
    parameter_name = "integrity"

    def rules(self, model_admin: admin.ModelAdmin[Any]) -> list[Any]:
        return [rule for rule in default_registry.select() if rule.model is model_admin.model]

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [(ANY_ERROR, "Breaks an error-level rule")] + [
            (rule.id, f"{rule.id.rpartition('.')[2]}: {rule.description}") for rule in self.rules(model_admin)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if not value:
            return None
        rules = [
            rule
            for rule in default_registry.select()
            if rule.model is queryset.model
            and (rule.id == value or (value == ANY_ERROR and rule.severity == "error"))
        ]
        condition = Q(pk__in=[])
        for rule in rules:
            condition |= rule.scoped_condition(default_registry)
        return queryset.filter(condition)
