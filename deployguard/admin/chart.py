"""The activity chart's geometry: stacked bars per bucket and origin, deploy windows behind them.

Pure arithmetic on an `Activity`; the template draws it as SVG, so the page needs no script
and no network. Coordinates are in the SVG's own units (a viewBox that scales to the page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from deployguard.activity import KIND_LABELS, KINDS, Activity

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 44
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
X_LABELS = 8
Y_TICKS = 5


@dataclass
class Segment:
    kind: str
    y: float
    height: float
    rows: int


@dataclass
class Bar:
    x: float
    width: float
    label: str
    total: int
    segments: list[Segment] = field(default_factory=list)

    @property
    def tooltip(self) -> str:
        parts = ", ".join(f"{s.rows} by {KIND_LABELS[s.kind]}" for s in self.segments)
        return f"{self.label}: {self.total} rows ({parts})"


@dataclass
class Shade:
    x: float
    width: float
    label: str


@dataclass
class Chart:
    bars: list[Bar]
    shades: list[Shade]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]
    title: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = PLOT_WIDTH
    plot_height: int = PLOT_HEIGHT

    @property
    def baseline(self) -> int:
        return TOP + PLOT_HEIGHT

    @property
    def right(self) -> int:
        return LEFT + PLOT_WIDTH


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at least `value` (and at least 1), for the y axis's top."""
    value = max(value, 1)
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def bucket_label(moment: datetime, bucket: str) -> str:
    if bucket == "day":
        return f"{moment.day} {moment:%b %Y}"
    return f"{moment.day} {moment:%b %Y} {moment:%H}:00 to {(moment + timedelta(hours=1)):%H}:00 UTC"


def axis_label(moment: datetime, bucket: str, first: bool) -> str:
    if bucket == "day" or moment.hour == 0 or first:
        return f"{moment.day} {moment:%b}" if bucket == "day" else f"{moment.day} {moment:%b} {moment:%H}:00"
    return f"{moment:%H}:00"


def _x(activity: Activity, moment: datetime) -> float:
    span = (activity.end - activity.start).total_seconds()
    offset = (min(max(moment, activity.start), activity.end) - activity.start).total_seconds()
    return LEFT + PLOT_WIDTH * offset / span


def describe(activity: Activity) -> tuple[str, str]:
    what = {"all": "created and changed", "created": "created", "changed": "changed or deleted"}[
        activity.what
    ]
    first, last = activity.start, activity.end
    title = (
        f"Rows {what} per {activity.bucket}, "
        f"{first.day} {first:%b %Y %H:%M} to {last.day} {last:%b %Y %H:%M} UTC"
    )
    total = sum(activity.total(m) for m in activity.counts)
    tables = ", ".join(activity.models) or "no table"
    sentences = [f"{total} row change{'s' if total != 1 else ''} in all, in {tables}."]
    peak = activity.peak()
    if peak is not None:
        moment, rows = peak
        kinds = activity.counts[moment]
        by = ", ".join(f"{kinds[k]} by {KIND_LABELS[k]}" for k in KINDS if kinds.get(k))
        sentences.append(f"Peak: {rows} in {bucket_label(moment, activity.bucket)} ({by}).")
    windows = len(activity.windows)
    sentences.append(
        f"{windows} deploy window{'s' if windows != 1 else ''} shaded."
        if windows
        else "No deploy in this range."
    )
    return title, " ".join(sentences)


def chart(activity: Activity) -> Chart:
    buckets = activity.buckets()
    highest = max((activity.total(m) for m in activity.counts), default=0)
    step = nice_ceiling(math.ceil(max(highest, 1) / Y_TICKS))
    top = math.ceil(max(highest, 1) / step) * step
    slot = PLOT_WIDTH / max(len(buckets), 1)
    gap = min(2.0, slot * 0.2) if slot > 3 else 0.0
    bars = []
    for index, moment in enumerate(buckets):
        kinds = activity.counts.get(moment, {})
        bar = Bar(
            x=LEFT + index * slot + gap / 2,
            width=max(slot - gap, 0.5),
            label=bucket_label(moment, activity.bucket),
            total=sum(kinds.values()),
        )
        y = float(TOP + PLOT_HEIGHT)
        for kind in KINDS:
            rows = kinds.get(kind, 0)
            if rows:
                height = PLOT_HEIGHT * rows / top
                y -= height
                bar.segments.append(Segment(kind, round(y, 2), round(height, 2), rows))
        if bar.total:
            bars.append(bar)
    shades = [
        Shade(
            x=_x(activity, w.start),
            width=max(_x(activity, w.end) - _x(activity, w.start), 1.5),
            label=w.label,
        )
        for w in activity.windows
    ]
    y_ticks = [(round(TOP + PLOT_HEIGHT - PLOT_HEIGHT * v / top, 2), v) for v in range(0, top + 1, step)]
    every = max(1, math.ceil(len(buckets) / X_LABELS))
    if activity.bucket == "hour" and every > 1:
        every = next((h for h in (2, 3, 4, 6, 12, 24, 48, 72, 168) if h >= every), every)
    x_labels = [
        (round(LEFT + i * slot, 2), axis_label(moment, activity.bucket, i == 0))
        for i, moment in enumerate(buckets)
        if i % every == 0
    ]
    title, description = describe(activity)
    return Chart(
        bars=bars, shades=shades, y_ticks=y_ticks, x_labels=x_labels, title=title, description=description
    )
