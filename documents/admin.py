"""The admin: submissions and drafts change only through the services, via reasoned actions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import Field, Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from deployguard.admin import IntegrityListFilter, ProvenanceAdminMixin
from deployguard.exceptions import DeployModeActive
from deployguard.monitoring import batched_checks
from documents import legitimacy, services
from documents.exceptions import DocumentsRefusal
from documents.models import PublishedDraft, Submission

REVERT_DISABLED = (
    "Reverting from history is disabled: change documents through the admin's actions, "
    "which record who made the change and why."
)
NAMES_MAY_MOVE = (
    "Names are given out when you confirm: if another admin publishes in the meantime, the numbers move up."
)
BAD_SELECTION = "Nothing was changed: the selection held {value!r}, which is not the ID of a row."
NUL_IN_ADDRESS = "The address held a NUL character, which no row contains: it was dropped from the filters."
SEARCH_TOO_LONG = "Search for at most {limit} characters (the longest searchable field holds {limit})."
NO_SUCH_VERSION = "{name} with ID “{key}” has no version “{version}”."
RULE_BROKEN_BY_EDIT = "Not saved: the change would break {breach}."
NOTHING_CONFIRMED = (
    "Nothing was {verb}: the form did not carry the rows its confirmation page listed. "
    "Select the rows again and confirm on the page that lists them."
)
CHANGED_SINCE_SHOWN = (
    "Not {verb}, because they changed after the confirmation page listed them: {rows}. "
    "Select them again to see what they are now."
)
CONFIRM_TEMPLATE = "admin/documents/confirm_reasoned_action.html"
MAX_LISTED_ROWS = 200
MAX_SEARCH_LENGTH = 300


def _is_key(field: Field[Any, Any], value: str) -> bool:
    """Whether `value` can name a row: it parses, and fits the column (no overflow on the database)."""
    try:
        field.clean(field.to_python(value), None)
    except ValidationError:
        return False
    return True


def _counted(count: int, singular: str, plural: str) -> str:
    return (singular if count == 1 else plural).format(count=count)


NAMED_AT_MOST = 10


def done_named(rows: list[Any], counted: str) -> str:
    """ "Published 2 submissions: rfc12, rfc13." with each name linked to its admin page."""
    links = format_html_join(
        ", ",
        '<a href="{}">{}</a>',
        (
            (reverse(f"admin:{row._meta.app_label}_{row._meta.model_name}_change", args=[row.pk]), str(row))
            for row in rows[:NAMED_AT_MOST]
        ),
    )
    more = f" and {len(rows) - NAMED_AT_MOST} more" if len(rows) > NAMED_AT_MOST else ""
    return format_html("{}: {}{}.", counted.rstrip("."), links, more)


# One query either way, so that a page's query count does not depend on the table's size.
# The count branch's subquery runs only when taken (PostgreSQL: an InitPlan; SQLite: CASE).
ESTIMATE_OR_COUNT = {
    "postgresql": (
        "SELECT CASE WHEN c.reltuples >= %(from)s THEN c.reltuples::bigint "
        "ELSE (SELECT count(*) FROM {table}) END FROM pg_class c WHERE c.oid = %(table)s::regclass"
    ),
    # SQLite keeps no row count: count up to the threshold, and past it take the span of the
    # primary keys, which documents only ever grow (quarantine never deletes).
    "sqlite": (
        "WITH bounded(n) AS (SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %(from)s)) "
        "SELECT CASE WHEN n < %(from)s THEN n "
        "ELSE (SELECT max({pk}) FROM {table}) - (SELECT min({pk}) FROM {table}) + 1 END FROM bounded"
    ),
}


class LargeTablePaginator(Paginator):
    """Estimates an unfiltered changelist's count once its table is large.

    Django's paginator runs COUNT(*) on every page view, which reads the whole table: tens of
    milliseconds a million rows, more than the rest of the page. Unfiltered, an estimate is as
    good for "page 3 of 20,000": PostgreSQL's row estimate (kept by autovacuum), or on SQLite
    the span of primary keys. Below ESTIMATE_FROM rows, and for filtered or searched lists,
    the count is exact.
    """

    ESTIMATE_FROM = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        sql = ESTIMATE_OR_COUNT.get(connection.vendor)
        if sql is None or queryset.query.where or queryset.query.distinct:
            return super().count
        meta = queryset.model._meta
        quoted = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                sql.format(table=quoted(meta.db_table), pk=quoted(meta.pk.column)),
                {"from": self.ESTIMATE_FROM, "table": quoted(meta.db_table)},
            )
            return int(cursor.fetchone()[0] or 0)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=2000,
        help_text="Recorded in the history of every row this changes.",
        error_messages={"required": "Give a reason: it is recorded in the audit trail."},
    )


@dataclass(frozen=True)
class Outcome:
    """What confirming would do to one listed row: `text` to show, and whether it is acted on."""

    text: str
    actionable: bool


def shown_state(obj: Any, fields: tuple[str, ...]) -> str:
    """A digest of the values a confirmation page showed a row in; confirming compares it again."""
    values = repr([(name, getattr(obj, name)) for name in ("pk", *fields)])
    return hashlib.sha256(values.encode()).hexdigest()[:20]


def _parse_shown(entries: list[str], pk: Field[Any, Any]) -> dict[Any, str] | None:
    """{pk: state} from the form's `shown` entries ("pk:state"), or None when one is malformed."""
    shown: dict[Any, str] = {}
    for entry in entries:
        key, _, state = entry.rpartition(":")
        if not key or not state or not _is_key(pk, key):
            return None
        shown[pk.to_python(key)] = state
    return shown


class ReasonedActionMixin:
    """Actions that show a confirmation page with a required reason, then call a service per row.

    The page lists at most MAX_LISTED_ROWS rows, with counts for the whole selection; the
    form carries the rows it listed as acted on, each with the state it was shown in.
    Confirming acts on those rows only, each locked and compared with what was shown: a row
    that changed since is named and left alone. Another selection is another page.
    """

    # The fields whose values a confirmation page shows and a confirmation checks again.
    state_fields: tuple[str, ...] = ("status", "data_source", "is_legitimate")

    def confirm_then_apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        *,
        title: str,
        verb: str,
        plan: Callable[[list[Any]], list[Outcome]],
        apply: Callable[[Any, str], object],
        done_message: tuple[str, str],
        confirm_label: str,
        note: str = "",
        initial_reason: str = "",
    ) -> HttpResponse | None:
        modeladmin: admin.ModelAdmin[Any] = self  # type: ignore[assignment]
        if request.POST.get("post") == "yes":
            form = ReasonForm(request.POST)
            if form.is_valid():
                self._apply_shown(request, form.cleaned_data["reason"], verb, apply, done_message)
                return None
            # A refused reason shows the page again, for the same rows as the form carried.
            shown = _parse_shown(request.POST.getlist("shown"), modeladmin.model._meta.pk) or {}
            listed = list(modeladmin.get_queryset(request).filter(pk__in=list(shown)).order_by("pk"))
            total = len(listed)
        else:
            form = ReasonForm(initial={"reason": initial_reason})
            listed = list(queryset.order_by("pk")[:MAX_LISTED_ROWS])
            total = len(listed) if len(listed) < MAX_LISTED_ROWS else queryset.count()
        outcomes = plan(listed)
        actionable = [obj for obj, outcome in zip(listed, outcomes, strict=True) if outcome.actionable]
        opts = modeladmin.model._meta
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "opts": opts,
            "app_label": opts.app_label,
            "rows": [(obj, outcome.text) for obj, outcome in zip(listed, outcomes, strict=True)],
            "selected_count": total,
            "unlisted_count": total - len(listed),
            "actionable_count": len(actionable),
            "verb": verb,
            "shown": [f"{obj.pk}:{shown_state(obj, self.state_fields)}" for obj in actionable],
            "selected_ids": [obj.pk for obj in actionable],
            "action": request.POST.get("action", ""),
            "form": form,
            "confirm_label": confirm_label,
            "note": note,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    def _apply_shown(
        self,
        request: HttpRequest,
        reason: str,
        verb: str,
        apply: Callable[[Any, str], object],
        done_message: tuple[str, str],
    ) -> None:
        modeladmin: admin.ModelAdmin[Any] = self  # type: ignore[assignment]
        entries = request.POST.getlist("shown")
        shown = _parse_shown(entries, modeladmin.model._meta.pk)
        if not shown or len(shown) > MAX_LISTED_ROWS:
            modeladmin.message_user(request, NOTHING_CONFIRMED.format(verb=verb), messages.ERROR)
            return
        rows = modeladmin.get_queryset(request).order_by()
        done: list[Any] = []  # what each row's service returned (a draft, when publishing), or the row
        changed = []
        # One transaction per row, so a refused row leaves the others done; the
        # integrity monitor checks the committed rows together at the end.
        with batched_checks():
            for pk, state in sorted(shown.items()):
                try:
                    with transaction.atomic():
                        obj = rows.select_for_update().filter(pk=pk).first()
                        if obj is None or shown_state(obj, self.state_fields) != state:
                            changed.append(str(obj) if obj is not None else f"ID {pk} (gone)")
                            continue
                        result = apply(obj, reason)
                        # Recent actions on the admin's index: who did what to which row, and why.
                        modeladmin.log_change(request, obj, f"{verb.capitalize()}: {reason}")
                except DocumentsRefusal as refusal:
                    modeladmin.message_user(request, str(refusal), messages.ERROR)
                    continue
                done.append(result if isinstance(result, Model) else obj)
        if changed:
            modeladmin.message_user(
                request, CHANGED_SINCE_SHOWN.format(verb=verb, rows=", ".join(changed)), messages.ERROR
            )
        if done:  # never a green "0" beside the errors that say why
            summary = done_named(done, _counted(len(done), *done_message))
            modeladmin.message_user(request, summary, messages.SUCCESS)


class AuditedAdmin(ProvenanceAdminMixin, ReasonedActionMixin, SimpleHistoryAdmin):
    """History is for reading: a revert would be a write path around the services.

    Hostile addresses and forms get a message, never a 500: an ID that is not a key, a
    selection that is not, a NUL character in the filters, a search longer than any field.
    """

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        query = request.GET.copy()
        problems = []
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in query.lists()):
            problems.append(NUL_IN_ADDRESS)
            for key in [key for key, values in query.lists() if "\x00" in key + "".join(values)]:
                del query[key]
        if len(query.get(SEARCH_VAR, "")) > MAX_SEARCH_LENGTH:
            problems.append(SEARCH_TOO_LONG.format(limit=MAX_SEARCH_LENGTH))
            del query[SEARCH_VAR]
        if problems:
            for problem in problems:
                self.message_user(request, problem, messages.ERROR)
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}" if query else request.path)
        return super().changelist_view(request, extra_context)

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        pk = self.model._meta.pk
        for value in request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME):
            if not _is_key(pk, value):
                self.message_user(request, BAD_SELECTION.format(value=value[:50]), messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        if not _is_key(self.model._meta.pk, unquote(object_id)):
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> HttpResponse:
        opts = self.model._meta
        if request.method != "GET":
            self.message_user(request, REVERT_DISABLED, messages.ERROR)
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[object_id])
            )
        if not _is_key(opts.pk, unquote(object_id)):
            return self._get_obj_does_not_exist_redirect(request, opts, object_id)
        if not _is_key(self.model.history.model._meta.pk, version_id):
            self.message_user(
                request,
                NO_SUCH_VERSION.format(
                    name=opts.verbose_name, key=unquote(object_id), version=version_id[:50]
                ),
                messages.WARNING,
            )
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[object_id])
            )
        return super().history_form_view(request, object_id, version_id, extra_context)


class DraftInline(admin.StackedInline):
    model = PublishedDraft
    fields = ("name", "status", "published_by", "published_at", "withdrawn_by", "withdrawn_at")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Submission)
class SubmissionAdmin(AuditedAdmin):
    list_display = (
        "ml_number",
        "title",
        "submitted_by",
        "status",
        "draft_name",
        "data_source",
        "is_legitimate",
        "integrity",
        "created_at",
    )
    list_filter = ("status", "data_source", "is_legitimate", IntegrityListFilter)
    search_fields = ("ml_number", "title", "submitted_by", "draft__name")
    list_select_related = ("draft",)
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 50
    inlines = (DraftInline,)
    actions = ("approve_selected", "reject_selected", "publish_selected")
    editable_fields = ("title", "submitted_by")
    state_fields = ("status", "data_source", "is_legitimate", "title", "submitted_by", "approved_by_id")
    readonly_fields = ("status", "approved_by", "data_source", "is_legitimate", "created_at", "updated_at")

    def get_form(
        self, request: HttpRequest, obj: Submission | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change=change, **kwargs)
        actor = request.user

        class RuleCheckedForm(form):  # type: ignore[valid-type,misc]
            """Refuses, as a form error, a save that would break an error-level integrity rule."""

            def clean(self) -> dict[str, Any]:
                data = super().clean()
                if self.errors:
                    return data
                instance = self.instance
                try:
                    broken = services.submission_breaches(
                        actor=actor,
                        ml_number=data.get("ml_number", instance.ml_number),
                        title=data.get("title", instance.title),
                        submitted_by=data.get("submitted_by", instance.submitted_by),
                        submission=instance if instance.pk else None,
                    )
                except DeployModeActive:
                    # Not the form's data: deploy mode went on after the middleware let this
                    # request through. Raised on, the middleware answers it with its 503.
                    raise
                except DocumentsRefusal as refusal:
                    raise ValidationError(str(refusal)) from refusal
                if broken:
                    raise ValidationError([RULE_BROKEN_BY_EDIT.format(breach=breach) for breach in broken])
                return data

        return RuleCheckedForm

    def get_inlines(self, request: HttpRequest, obj: Submission | None = None) -> tuple[type, ...]:
        return self.inlines if obj is not None and hasattr(obj, "draft") else ()

    def get_fields(self, request: HttpRequest, obj: Submission | None = None) -> tuple[str, ...]:
        return ("ml_number", *self.editable_fields, *(self.readonly_fields if obj else ()))

    def get_readonly_fields(self, request: HttpRequest, obj: Submission | None = None) -> tuple[str, ...]:
        return ("ml_number", *self.readonly_fields) if obj else ()

    @admin.display(description="draft", ordering="draft__name")
    def draft_name(self, obj: Submission) -> str:
        """The draft's name, and "(withdrawn)" once it no longer is published."""
        draft = getattr(obj, "draft", None)
        if draft is None:
            return "—"
        return f"{draft.name} (withdrawn)" if draft.status == PublishedDraft.Status.WITHDRAWN else draft.name

    def has_change_permission(self, request: HttpRequest, obj: Submission | None = None) -> bool:
        if obj is not None and obj.status != Submission.Status.SUBMITTED:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Submission | None = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("documents.approve_submission")

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("documents.publish_submission")

    def save_model(self, request: HttpRequest, obj: Submission, form: forms.ModelForm, change: bool) -> None:
        if change:
            changed = ", ".join(form.changed_data) or "nothing"
            saved = services.update_submission(
                actor=request.user,
                submission=obj,
                title=obj.title,
                submitted_by=obj.submitted_by,
                reason=f"Edited in the admin: {changed}",
            )
        else:
            saved = services.create_submission(
                actor=request.user,
                ml_number=obj.ml_number,
                title=obj.title,
                submitted_by=obj.submitted_by,
                reason="Created in the admin",
            )
        obj.__dict__.update(saved.__dict__)

    def _review_plan(self, verb: str, *, check_rules: bool) -> Callable[[list[Submission]], list[Outcome]]:
        def plan(listed: list[Submission]) -> list[Outcome]:
            submitted = [s.pk for s in listed if s.status == Submission.Status.SUBMITTED]
            broken = legitimacy.breaches(submitted) if check_rules else {}
            return [
                Outcome(f"cannot be {verb}: {s.status}", False)
                if s.status != Submission.Status.SUBMITTED
                else Outcome(f"cannot be {verb}: {legitimacy.describe(broken[s.pk])}", False)
                if s.pk in broken
                else Outcome(f"will be {verb}", True)
                for s in listed
            ]

        return plan

    @admin.action(permissions=["approve"], description="Approve selected submissions")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Submission]) -> HttpResponse | None:
        return self.confirm_then_apply(
            request,
            queryset,
            title="Approve submissions",
            verb="approved",
            plan=self._review_plan("approved", check_rules=True),
            apply=lambda s, reason: services.approve_submission(
                actor=request.user, submission=s, reason=reason
            ),
            done_message=("Approved {count} submission.", "Approved {count} submissions."),
            confirm_label="Yes, approve",
            initial_reason="Approved",
        )

    @admin.action(permissions=["approve"], description="Reject selected submissions")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Submission]) -> HttpResponse | None:
        return self.confirm_then_apply(
            request,
            queryset,
            title="Reject submissions",
            verb="rejected",
            plan=self._review_plan("rejected", check_rules=False),
            apply=lambda s, reason: services.reject_submission(
                actor=request.user, submission=s, reason=reason
            ),
            done_message=("Rejected {count} submission.", "Rejected {count} submissions."),
            confirm_label="Yes, reject",
        )

    @staticmethod
    def _publish_plan(listed: list[Submission]) -> list[Outcome]:
        approved = [s.pk for s in listed if s.status == Submission.Status.APPROVED]
        broken = legitimacy.breaches(approved)
        names = iter(services.next_draft_names(len([pk for pk in approved if pk not in broken])))
        return [
            Outcome(f"cannot be published: {s.status}", False)
            if s.status != Submission.Status.APPROVED
            else Outcome(f"cannot be published: {legitimacy.describe(broken[s.pk])}", False)
            if s.pk in broken
            else Outcome(f"will be published as {next(names)}", True)
            for s in listed
        ]

    @admin.action(permissions=["publish"], description="Publish selected submissions")
    def publish_selected(self, request: HttpRequest, queryset: QuerySet[Submission]) -> HttpResponse | None:
        return self.confirm_then_apply(
            request,
            queryset,
            title="Publish submissions",
            verb="published",
            plan=self._publish_plan,
            apply=lambda s, reason: services.publish_submission(
                actor=request.user, submission=s, reason=reason
            ),
            done_message=("Published {count} submission.", "Published {count} submissions."),
            confirm_label="Yes, publish",
            note=NAMES_MAY_MOVE,
        )


@admin.register(PublishedDraft)
class PublishedDraftAdmin(AuditedAdmin):
    list_display = (
        "name",
        "submission",
        "status",
        "published_by",
        "published_at",
        "data_source",
        "is_legitimate",
        "integrity",
    )
    list_filter = ("status", "data_source", "is_legitimate", IntegrityListFilter)
    search_fields = ("name", "submission__ml_number", "submission__title")
    list_select_related = ("submission", "published_by")
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 50
    actions = ("withdraw_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PublishedDraft | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PublishedDraft | None = None) -> bool:
        return False

    def has_withdraw_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("documents.withdraw_publisheddraft")

    @admin.action(permissions=["withdraw"], description="Withdraw selected drafts")
    def withdraw_selected(
        self, request: HttpRequest, queryset: QuerySet[PublishedDraft]
    ) -> HttpResponse | None:
        return self.confirm_then_apply(
            request,
            queryset.select_related("submission"),
            title="Withdraw published drafts",
            verb="withdrawn",
            plan=lambda listed: [
                Outcome("will be withdrawn", True)
                if d.status == PublishedDraft.Status.PUBLISHED
                else Outcome("already withdrawn", False)
                for d in listed
            ],
            apply=lambda d, reason: services.withdraw_draft(actor=request.user, draft=d, reason=reason),
            done_message=("Withdrew {count} draft.", "Withdrew {count} drafts."),
            confirm_label="Yes, withdraw",
        )
