"""Rows created and changed over time, by where each change came from, read from the history records.

deployguard knows nothing of the apps it protects: the models counted are every installed
model with django-simple-history whose table is protected. Each history record counts once,
in the hour or day (UTC) it was written, under its origin's kind: a deploy when it carries a
deploy id, else what `history_origin` starts with (deployguard.origin: `request:`,
`command:`, `process:`/`job:`/`task:` for background jobs), else unknown (no origin was
recorded). One query per model and two for the deploy windows, whatever the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.apps import apps
from django.db import models
from django.db.models import Case, Count, F, Q, Value, When
from django.utils import timezone

from deployguard import guard
from deployguard.integrity import history_model
from deployguard.models import DeployModeState, DeployRecord

Bucket = Literal["hour", "day"]
BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}
# The widest range each bucket may cover: enough bars to read, few enough to draw.
MAX_SPAN: dict[str, timedelta] = {"hour": timedelta(days=31), "day": timedelta(days=731)}
KINDS = ("request", "command", "job", "deploy", "unknown")
KIND_LABELS = {
    "request": "admin request",
    "command": "command",
    "job": "job or script",
    "deploy": "deploy",
    "unknown": "no origin recorded",
}
KIND_PREFIXES: dict[str, tuple[str, ...]] = {
    "request": ("request:",),
    "command": ("command:",),
    "job": ("job:", "task:", "process:"),
}
WHAT = {"all": ("+", "~", "-"), "created": ("+",), "changed": ("~", "-")}
WINDOW_LIMIT = 500


class EpochBucket(models.Func):
    """The start of a timestamp's UTC hour or day, in seconds since 1970: native on both engines
    (Django's Trunc calls a Python function per row on SQLite)."""

    output_field = models.BigIntegerField()

    def __init__(self, expression: Any, seconds: int) -> None:
        super().__init__(expression)
        self.seconds = int(seconds)  # ours, never user input: written into the SQL

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(CAST(strftime('%%s', {sql}) AS INTEGER) / {self.seconds} * {self.seconds})", list(params)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(floor(extract(epoch FROM {sql}) / {self.seconds})::bigint * {self.seconds})", list(params)


@dataclass(frozen=True)
class Tracked:
    model: type[models.Model]
    history: type[models.Model]
    has_origin: bool


def tracked_models() -> list[Tracked]:
    """Every installed model with simple-history whose table is protected, in app order."""
    tracked = []
    for model in apps.get_models():
        history = history_model(model)
        if history is None or not guard.is_protected(model._meta.db_table.lower()):
            continue
        names = {f.name for f in history._meta.get_fields()}
        tracked.append(Tracked(model, history, {"history_origin", "history_deploy_id"} <= names))
    return tracked


def kind_of(origin: str, deploy_id: str) -> str:
    """The kind of one origin, as the SQL below classifies it (for tests and single records)."""
    if deploy_id:
        return "deploy"
    for kind, prefixes in KIND_PREFIXES.items():
        if origin.startswith(prefixes):
            return kind
    return "unknown"


def _kind_expression(has_origin: bool) -> Any:
    if not has_origin:
        return Value("unknown")
    whens = [When(~Q(history_deploy_id=""), then=Value("deploy"))]
    for kind, prefixes in KIND_PREFIXES.items():
        condition = Q()
        for prefix in prefixes:
            condition |= Q(history_origin__startswith=prefix)
        whens.append(When(condition, then=Value(kind)))
    return Case(*whens, default=Value("unknown"), output_field=models.CharField())


@dataclass
class Window:
    """A time when writes were frozen: a deploy, or deploy mode switched on by hand."""

    start: datetime
    end: datetime
    label: str


@dataclass
class Activity:
    start: datetime
    end: datetime
    bucket: str
    what: str
    # {bucket start: {kind: rows}}, only buckets with rows.
    counts: dict[datetime, dict[str, int]] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def total(self, moment: datetime) -> int:
        return sum(self.counts.get(moment, {}).values())

    def buckets(self) -> list[datetime]:
        step = timedelta(seconds=BUCKET_SECONDS[self.bucket])
        moments, moment = [], self.start
        while moment < self.end:
            moments.append(moment)
            moment += step
        return moments

    def peak(self) -> tuple[datetime, int] | None:
        if not self.counts:
            return None
        moment = max(self.counts, key=lambda m: (self.total(m), -m.timestamp()))
        return moment, self.total(moment)


def align(moment: datetime, bucket: str) -> datetime:
    """The start of the UTC hour or day holding `moment`."""
    seconds = BUCKET_SECONDS[bucket]
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, tz=UTC)


def collect(start: datetime, end: datetime, *, bucket: str = "hour", what: str = "all") -> Activity:
    """History records per bucket and origin kind between `start` (aligned down) and `end`."""
    start, end = (
        align(start, bucket),
        align(end - timedelta(microseconds=1), bucket) + timedelta(seconds=BUCKET_SECONDS[bucket]),
    )
    activity = Activity(start=start, end=end, bucket=bucket, what=what)
    for tracked in tracked_models():
        activity.models.append(str(tracked.model._meta.verbose_name_plural))
        rows = (
            tracked.history._base_manager.filter(
                history_date__gte=start, history_date__lt=end, history_type__in=WHAT[what]
            )
            .annotate(bucket=EpochBucket(F("history_date"), BUCKET_SECONDS[bucket]))
            .annotate(kind=_kind_expression(tracked.has_origin))
            .values("bucket", "kind")
            .annotate(rows=Count("*"))
            .order_by()
        )
        for row in rows:
            moment = datetime.fromtimestamp(int(row["bucket"]), tz=UTC)
            per_kind = activity.counts.setdefault(moment, {})
            per_kind[row["kind"]] = per_kind.get(row["kind"], 0) + row["rows"]
    activity.windows = deploy_windows(start, end)
    return activity


def deploy_windows(start: datetime, end: datetime) -> list[Window]:
    """Deploys (DeployRecord) and deploy mode switched on (its history) overlapping [start, end)."""
    now = timezone.now()
    windows = [
        Window(record.started_at, record.finished_at or now, f"deploy {record.deploy_id} ({record.status})")
        for record in DeployRecord.objects.filter(started_at__lt=end)
        .filter(Q(finished_at__gte=start) | Q(finished_at__isnull=True))
        .only("deploy_id", "status", "started_at", "finished_at")
        .order_by("started_at")[:WINDOW_LIMIT]
    ]
    history = DeployModeState.history.model._base_manager
    fields = ("enabled", "since", "history_date", "reason")
    before = history.filter(history_date__lt=start).order_by("-history_date", "-history_id").values(*fields)
    during = (
        history.filter(history_date__gte=start, history_date__lt=end)
        .order_by("history_date", "history_id")
        .values(*fields)
    )
    records = [*before[:1], *during[:WINDOW_LIMIT]]
    opened: tuple[datetime, str] | None = None
    for record in records:
        if record["enabled"] and opened is None:
            opened = (record["since"] or record["history_date"], record["reason"])
        elif not record["enabled"] and opened is not None:
            windows.append(Window(opened[0], record["history_date"], f"deploy mode: {opened[1]}"))
            opened = None
    if opened is not None:
        windows.append(Window(opened[0], now, f"deploy mode: {opened[1]}"))
    return [w for w in windows if w.end > start and w.start < end]
