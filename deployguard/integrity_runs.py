"""Integrity counts computed on demand and kept (`IntegrityRun`), so pages show them without counting.

`record()` counts every rule's rows now (one pass per table, no samples) and stores the
result; `latest()` is the last one stored. Counting reads the protected tables and writes
only deployguard's own, so it works in deploy mode too.
"""

from __future__ import annotations

import time

from deployguard.integrity import IntegrityRegistry, default_registry, evaluate
from deployguard.models_operations import IntegrityRun
from deployguard.origin import current_origin


def record(*, computed_by: str, registry: IntegrityRegistry | None = None) -> IntegrityRun:
    """Count the rows breaking every rule that is not silenced, store the counts, return the run."""
    registry = registry or default_registry
    started = time.perf_counter()
    results = evaluate(registry.select(), registry=registry, sample_size=0)
    return IntegrityRun.objects.create(
        computed_by=computed_by[:255],
        origin=current_origin(),
        duration_s=round(time.perf_counter() - started, 3),
        counts={result.rule.id: result.count for result in results},
    )


def latest() -> IntegrityRun | None:
    """The most recent stored counts, or None before the first run."""
    return IntegrityRun.objects.order_by("-computed_at", "-id").first()
