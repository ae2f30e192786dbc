"""Waiting in tests for something another process or thread does: a bound against hangs, never a
claim about speed. The machine may be busy (CI shares it), so bounds are generous, and a wait that
gives up says what it saw, so a failure tells a slow machine from a broken product."""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_TIMEOUT = 120.0


def wait_until(
    condition: Callable[[], object],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    describe: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> None:
    """Return once `condition()` is true; fail after `timeout` seconds, naming `what` and, when
    `describe` is given, what it reports of the state at that moment."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f" Seen: {describe()}" if describe is not None else ""
            raise AssertionError(f"Gave up after {timeout:g}s waiting for {what}.{seen}")
        time.sleep(interval)
