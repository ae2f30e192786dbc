"""The deploys page: every `deploy_safe` run (DeployRecord), and each one step by step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.utils.html import format_html

from deployguard import humanize
from deployguard.admin.base import OperationsAdmin
from deployguard.models import DeployRecord

DETAIL_TEMPLATE = "admin/deployguard/deployrecord/detail.html"
LISTED_PKS = 20
SHORT_STATUS = {
    DeployRecord.Status.RUNNING: "running",
    DeployRecord.Status.SUCCEEDED: "deployed",
    DeployRecord.Status.ROLLED_BACK: "rolled back",
    DeployRecord.Status.RESTORE_FAILED: "restore failed",
    DeployRecord.Status.RECOVERED: "recovered",
}


@dataclass
class Step:
    name: str
    status: str
    seconds: float | None
    detail: str


@dataclass
class BlockedWrite:
    exception: str
    message: str
    places: list[str]


@dataclass
class TableChanges:
    migration: str
    table: str
    added: int
    removed: int
    changed: int
    keys: str  # the first primary keys of each kind, for reading


def _keys(entry: dict[str, Any]) -> str:
    parts = []
    for kind in ("added", "removed", "changed"):
        pks = [str(pk) for pk in entry.get(kind) or []]
        if pks:
            more = ", …" if len(pks) > LISTED_PKS else ""
            parts.append(f"{kind} {', '.join(pks[:LISTED_PKS])}{more}")
    return "; ".join(parts)


def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def steps(report: dict[str, Any]) -> list[Step]:
    """The report's steps, in order, each with its timing; what the pipeline wrote, defensively read."""
    found = []
    for step in _dicts(report.get("steps")):
        detail = step.get("detail")
        found.append(
            Step(
                name=str(step.get("name", "?")),
                status=str(step.get("status", "?")),
                seconds=_seconds(step.get("seconds")),
                detail="" if detail in (None, "", {}, []) else str(detail),
            )
        )
    return found


def blocked_writes(report: dict[str, Any]) -> list[BlockedWrite]:
    """What tried to write during the deploy, with the project code (file:line in function) that did."""
    return [
        BlockedWrite(
            exception=str(write.get("exception", "")),
            message=str(write.get("message", "")),
            places=[place for place in str(write.get("where", "")).split(" -> ") if place],
        )
        for write in _dicts(report.get("blocked_writes"))
    ]


def data_changes(report: dict[str, Any]) -> list[TableChanges]:
    """Rows the allowed data migrations added, removed and changed, per migration and table."""
    changes = report.get("data_migration_changes")
    found = []
    for migration, tables in changes.items() if isinstance(changes, dict) else []:
        for table, entry in tables.items() if isinstance(tables, dict) else []:
            entry = entry if isinstance(entry, dict) else {}
            counts = [len(entry.get(kind) or []) for kind in ("added", "removed", "changed")]
            found.append(TableChanges(str(migration), str(table), *counts, keys=_keys(entry)))
    return found


def duration(record: DeployRecord) -> str:
    if record.finished_at is None:
        return f"running for {humanize.span((timezone.now() - record.started_at).total_seconds())}"
    return humanize.span((record.finished_at - record.started_at).total_seconds())


@admin.register(DeployRecord)
class DeployRecordAdmin(OperationsAdmin):
    list_display = (
        "deploy_id",
        "status_badge",
        "started_by",
        "started",
        "took",
        "freeze_window",
        "backup",
        "exit",
    )
    search_fields = ("deploy_id", "started_by")
    list_per_page = 50
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeployRecord]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name and match.url_name.endswith("_changelist"):
            # The report can be large: the list reads only the one number it shows from it.
            return queryset.defer("report").annotate(freeze_window_s=KT("report__freeze_window_s"))
        return queryset

    @admin.display(description="status", ordering="status")
    def status_badge(self, record: DeployRecord) -> str:
        return format_html(
            '<span class="ops-badge {}" title="{}">{}</span>',
            record.status,
            record.get_status_display(),
            SHORT_STATUS.get(record.status, record.status),
        )

    @admin.display(description="backup", ordering="backup_path")
    def backup(self, record: DeployRecord) -> str:
        if not record.backup_path:
            return "—"
        return format_html(
            '<span title="{}">{}</span>', record.backup_path, PurePath(record.backup_path).name
        )

    @admin.display(description="exit", ordering="exit_status")
    def exit(self, record: DeployRecord) -> str:
        return "—" if record.exit_status is None else str(record.exit_status)

    @admin.display(description="started", ordering="started_at")
    def started(self, record: DeployRecord) -> str:
        return humanize.when(record.started_at)

    @admin.display(description="duration")
    def took(self, record: DeployRecord) -> str:
        return duration(record)

    @admin.display(description="freeze window")
    def freeze_window(self, record: DeployRecord) -> str:
        seconds = _seconds(getattr(record, "freeze_window_s", None))
        return "—" if seconds is None else humanize.span(seconds)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Deploys", **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """A deploy, read-only: its outcome, each step with its timing, what tried to write, rows changed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        record = self.get_object(request, unquote(object_id))
        if record is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        report = record.report if isinstance(record.report, dict) else {}
        return self.page(
            request,
            DETAIL_TEMPLATE,
            title=f"Deploy {record.deploy_id}",
            parent_title="Deploys",
            record=record,
            short_status=SHORT_STATUS.get(record.status, record.status),
            duration=duration(record),
            freeze_window=_seconds(report.get("freeze_window_s")),
            steps=steps(report),
            blocked_writes=blocked_writes(report),
            data_changes=data_changes(report),
        )
