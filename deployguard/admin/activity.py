"""The activity page: rows created and changed per hour or day, by origin, with deploy windows shaded."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone

from deployguard import activity
from deployguard.admin.base import VIEW_OPERATIONS, OperationsAdmin, require
from deployguard.admin.chart import bucket_label, chart
from deployguard.models_operations import Operations

TEMPLATE = "admin/deployguard/operations/activity.html"
DEFAULT_DAYS = 7
EARLIEST = date(1970, 1, 2)
LATEST = date(9000, 1, 1)
TOO_LONG = "{bucket} bars cover at most {days} days: choose a shorter range, or {other} bars."
OUT_OF_RANGE = "Choose dates between {earliest} and {latest}."
BACKWARDS = "The range ends before it starts: swap the dates."


class RangeForm(forms.Form):
    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))
    bucket = forms.ChoiceField(label="Bars per", choices=[("hour", "hour"), ("day", "day")])
    what = forms.ChoiceField(
        label="Count",
        choices=[("all", "created and changed"), ("created", "created"), ("changed", "changed or deleted")],
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end, bucket = data.get("start"), data.get("end"), data.get("bucket")
        if start is None or end is None or bucket is None:
            return data
        if not (EARLIEST <= start <= LATEST and EARLIEST <= end <= LATEST):
            raise forms.ValidationError(OUT_OF_RANGE.format(earliest=EARLIEST, latest=LATEST))
        if end < start:
            raise forms.ValidationError(BACKWARDS)
        limit = activity.MAX_SPAN[bucket]
        if end - start >= limit:
            other = "daily" if bucket == "hour" else "hourly"
            raise forms.ValidationError(
                TOO_LONG.format(
                    bucket="Hourly" if bucket == "hour" else "Daily", days=limit.days, other=other
                )
            )
        return data

    def moments(self) -> tuple[datetime, datetime]:
        """[start of the first day, start of the day after the last), in UTC."""
        data = self.cleaned_data
        return (
            datetime.combine(data["start"], time.min, UTC),
            datetime.combine(data["end"], time.min, UTC) + timedelta(days=1),
        )


def default_range() -> dict[str, Any]:
    today = timezone.now().astimezone(UTC).date()
    return {"start": today - timedelta(days=DEFAULT_DAYS - 1), "end": today, "bucket": "hour", "what": "all"}


@admin.register(Operations)
class ActivityAdmin(OperationsAdmin):
    """The activity page. Operations has no table: this admin offers only its page."""

    def get_urls(self) -> list[URLPattern]:
        return [self.route("", self.changelist_view, "changelist")]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        require(request, VIEW_OPERATIONS)
        asked = {key: request.GET[key] for key in ("start", "end", "bucket", "what") if key in request.GET}
        form = RangeForm({**{k: str(v) for k, v in default_range().items()}, **asked})
        context: dict[str, Any] = {"form": form, "chart": None, "activity": None}
        if form.is_valid():
            start, end = form.moments()
            found = activity.collect(
                start, end, bucket=form.cleaned_data["bucket"], what=form.cleaned_data["what"]
            )
            context.update(
                activity=found,
                chart=chart(found),
                kinds=[(kind, activity.KIND_LABELS[kind]) for kind in activity.KINDS],
                rows=[
                    (
                        bucket_label(moment, found.bucket),
                        [found.counts[moment].get(kind, 0) for kind in activity.KINDS],
                        found.total(moment),
                    )
                    for moment in sorted(found.counts)
                ],
            )
        return self.page(
            request, TEMPLATE, title="Activity", status=200 if form.is_valid() else 400, **context
        )
