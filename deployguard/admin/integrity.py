"""The integrity page: every rule with its count, as last computed, each linked to its rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, reverse

from deployguard import humanize, integrity_runs
from deployguard.admin.base import VIEW_OPERATIONS, OperationsAdmin, require
from deployguard.admin.filters import IntegrityListFilter
from deployguard.integrity import Rule, default_registry
from deployguard.models_operations import IntegrityRun

TEMPLATE = "admin/deployguard/integrityrun/page.html"
RECOMPUTED = "Counted the rows of {rules} rules in {took}: {failing}."
NEVER_COMPUTED = "The rules have not been counted yet: press Recount now."


@dataclass
class RuleRow:
    rule: Rule
    count: int | None
    rows_url: str


def _failing(counts: dict[str, int]) -> str:
    failing = sum(1 for count in counts.values() if count)
    if not failing:
        return "no rule has rows"
    return f"{failing} rule{'s' if failing != 1 else ''} {'have' if failing != 1 else 'has'} rows"


@admin.register(IntegrityRun)
class IntegrityAdmin(OperationsAdmin):
    def get_urls(self) -> list[URLPattern]:
        return [
            self.route("", self.changelist_view, "changelist"),
            self.route("recount/", self.recount_view, "recount", exempt=True),
        ]

    def rows_url(self, request: HttpRequest, rule: Rule) -> str:
        """The changelist of the rule's model filtered to its rows, if this user may see it."""
        try:
            model_admin = self.admin_site.get_model_admin(rule.model)
        except NotRegistered:
            return ""
        filters = model_admin.get_list_filter(request)
        if not model_admin.has_view_or_change_permission(request) or not any(
            isinstance(f, type) and issubclass(f, IntegrityListFilter) for f in filters
        ):
            return ""
        opts = rule.model._meta
        changelist = reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
        return f"{changelist}?{urlencode({IntegrityListFilter.parameter_name: rule.id})}"

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        require(request, VIEW_OPERATIONS)
        run = integrity_runs.latest()
        counts = run.counts if run is not None else {}
        rows = [
            RuleRow(rule, counts.get(rule.id), self.rows_url(request, rule) if counts.get(rule.id) else "")
            for rule in default_registry.select()
        ]
        return self.page(
            request,
            TEMPLATE,
            title="Integrity",
            run=run,
            rows=rows,
            never=NEVER_COMPUTED,
            silenced=list(getattr(settings, "DEPLOYGUARD_SILENCED_RULES", ())),
        )

    def recount_view(self, request: HttpRequest) -> HttpResponse:
        """POST: count every rule's rows now (a read of the data) and keep the counts."""
        if request.method != "POST":
            return HttpResponseRedirect(self.url("changelist"))
        require(request, VIEW_OPERATIONS)
        run = integrity_runs.record(computed_by=f"{request.user.get_username()} (admin)")
        self.message_user(
            request,
            RECOMPUTED.format(
                rules=len(run.counts), took=humanize.span(run.duration_s), failing=_failing(run.counts)
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.url("changelist"))
