"""What every benchmark shares: same-run alternating medians and the one BENCH line format.

    BENCH <name> ours=<s> baseline=<s> ratio=<ours/baseline> goal<=<ratio> [key=value ...]

Extra fields are `key=value`; `check:<what>=pass|fail` is a goal that is not a ratio (peak
memory under a limit, a fixed number of queries). benchmarks/run.py reads these lines back
to say which goals passed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Action = Callable[[], object]


def _timed(action: Action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def compare(
    ours: Action,
    baseline: Action,
    repeat: int,
    *,
    reset: Action | None = None,
    warm: bool = True,
    samples: dict[str, list[float]] | None = None,
) -> tuple[float, float]:
    """Medians of `repeat` runs of each side, alternating which goes first; `reset` runs untimed
    before every run. One untimed run of each first, so that neither side pays for cold caches.
    `samples`, if given, receives every run's time under "ours" and "baseline" (for a spread)."""
    if warm:
        for action in (ours, baseline):
            if reset is not None:
                reset()
            action()
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    order = [("ours", ours), ("baseline", baseline)]
    for round_ in range(repeat):
        for name, action in order if round_ % 2 == 0 else order[::-1]:
            if reset is not None:
                reset()
            times[name].append(_timed(action))
    if samples is not None:
        samples.update(times)
    return statistics.median(times["ours"]), statistics.median(times["baseline"])


def spread(times: list[float], per: int = 1) -> str:
    """ "min-max" of a side's runs in milliseconds, each divided by `per` (pages per run)."""
    return f"{min(times) * 1000 / per:.2f}-{max(times) * 1000 / per:.2f}ms"


def report(
    name: str,
    ours: float,
    baseline: float,
    goal: float | None,
    *,
    extra: dict[str, object] | None = None,
    checks: dict[str, bool] | None = None,
    note: str = "",
) -> bool:
    """Print the BENCH line; return whether every goal on it was met (no goal: informational)."""
    ratio = ours / baseline if baseline else float("inf")
    met = goal is None or ratio <= goal
    fields = [
        f"BENCH {name}",
        f"ours={ours:.4f}",
        f"baseline={baseline:.4f}",
        f"ratio={ratio:.3f}",
        f"goal<={'none' if goal is None else f'{goal:g}'}",
    ]
    for key, value in (extra or {}).items():
        fields.append(f"{key}={value}")
    for key, passed in (checks or {}).items():
        fields.append(f"check:{key}={'pass' if passed else 'fail'}")
        met = met and passed
    line = " ".join(fields)
    if note:
        line += f"  # {note}"
    print(line, flush=True)
    return met
