"""The quarantine runs page: each run with its rows, reason and operator, and its restore."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern

from deployguard import humanize, scrub
from deployguard.admin.base import RESTORE_SCRUBRUN, OperationsAdmin, paginate, require
from deployguard.integrity import IntegrityError, default_registry
from deployguard.models_integrity import ScrubRow, ScrubRun

DETAIL_TEMPLATE = "admin/deployguard/scrubrun/detail.html"
CONFIRM_TEMPLATE = "admin/deployguard/scrubrun/confirm_restore.html"
ROWS_PER_PAGE = 100
RESTORED = "Restored {done} from quarantine run {run}."
NOTHING_RESTORED = "Quarantine run {run} is marked restored: none of its rows was still quarantined."


def _plural_of(label: str, count: int) -> str:
    try:
        meta = default_registry.get_model(label)._meta
    except IntegrityError:  # a model no longer registered: name it by its label
        return f"{count} {label} row{'s' if count != 1 else ''}"
    return f"{count} {meta.verbose_name if count == 1 else meta.verbose_name_plural}"


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(_plural_of(label, count) for label, count in counts.items() if count) or "no rows"


@admin.register(ScrubRun)
class QuarantineRunAdmin(OperationsAdmin):
    list_display = ("id", "kind", "created", "origin", "rules", "quarantined", "state")
    search_fields = ("id", "origin")
    list_per_page = 50
    show_full_result_count = False

    def get_urls(self) -> list[URLPattern]:
        return [
            self.route("", self.changelist_view, "changelist"),
            self.route("<path:object_id>/restore/", self.restore_view, "restore"),
            self.route("<path:object_id>/", self.change_view, "change"),
        ]

    @admin.display(description="created", ordering="created_at")
    def created(self, run: ScrubRun) -> str:
        return humanize.when(run.created_at)

    @admin.display(description="rules")
    def rules(self, run: ScrubRun) -> str:
        return ", ".join(run.rule_ids) or "—"

    @admin.display(description="rows")
    def quarantined(self, run: ScrubRun) -> str:
        return counts_text(run.counts)

    @admin.display(description="state", ordering="restored_at")
    def state(self, run: ScrubRun) -> str:
        return f"restored {humanize.when(run.restored_at)}" if run.restored_at else "in force"

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Quarantine runs", **(extra_context or {})})

    def _run(self, request: HttpRequest, object_id: str) -> ScrubRun | None:
        return self.get_object(request, unquote(object_id))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """A run, read-only: why, by whom, and every row it put aside (paged), with its restore."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        run = self._run(request, object_id)
        if run is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        rows: QuerySet[ScrubRow] = run.rows.order_by("model_label", "id")
        return self.page(
            request,
            DETAIL_TEMPLATE,
            title=f"Quarantine run {run.id}",
            parent_title="Quarantine runs",
            run=run,
            counts=counts_text(run.counts),
            page_obj=paginate(request, rows, ROWS_PER_PAGE),
            can_restore=request.user.has_perm(RESTORE_SCRUBRUN) and run.restored_at is None,
            restore_url=self.url("restore", run.pk),
        )

    def restore_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what a restore would put back, to confirm; POST: the restore (scrub.restore)."""
        require(request, RESTORE_SCRUBRUN)
        run = self._run(request, object_id)
        if run is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        detail = self.url("change", run.pk)
        if request.method != "POST":
            in_force = run.rows.filter(purged_at__isnull=True)
            return self.page(
                request,
                CONFIRM_TEMPLATE,
                title=f"Restore quarantine run {run.id}?",
                parent_title="Quarantine runs",
                run=run,
                counts=counts_text(run.counts),
                per_model=in_force.values("model_label").annotate(rows=Count("id")).order_by("model_label"),
                purged=run.rows.filter(purged_at__isnull=False).count(),
                detail_url=detail,
            )
        try:
            restored = scrub.restore(run.pk)
        except (LookupError, scrub.ScrubRefused) as refusal:
            self.message_user(request, str(refusal.args[0] if refusal.args else refusal), messages.ERROR)
            return HttpResponseRedirect(detail)
        if restored:
            message = RESTORED.format(done=counts_text(restored), run=run.pk)
            self.message_user(request, message, messages.SUCCESS)
        else:
            message = NOTHING_RESTORED.format(run=run.pk)
            self.message_user(request, message, messages.WARNING)
        self.log_change(request, run, message)
        return HttpResponseRedirect(detail)
