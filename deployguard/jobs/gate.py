"""Whether a worker may start a job now: never while deploy mode is on, nor when it cannot be told."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from deployguard import state

logger = logging.getLogger("deployguard.jobs")

HOLD_POLL_SECONDS = 0.2
"""How often a holding worker reads the state again (from the database, not its cache), so
that held jobs start within about this long of `deploy_mode off`."""

HOLDING = "Holding jobs: {how} Queued jobs wait, in order, and start once deploy mode is off."
RESUMING = "Deploy mode is off: starting held jobs again after {seconds:.1f}s."


def closed() -> state.DeployModeStatus | None:
    """The deploy-mode state that keeps jobs from starting, or None when they may start.

    It is the write guard's own reader (state.current(), cached for
    DEPLOYGUARD_STATE_CACHE_SECONDS): an unreadable state counts as on, and so do
    DEPLOYMENT_MODE=true and deploy_safe's own frozen processes.
    """
    status = state.current()
    return status if status.enabled else None


def hold(status: state.DeployModeStatus, *, keep_waiting: Callable[[], bool] = lambda: True) -> bool:
    """Block while deploy mode is on, reading the state afresh every HOLD_POLL_SECONDS.

    Returns True once jobs may start, False when `keep_waiting()` says to give up first (the
    worker is shutting down). A state forced on for the process (DEPLOYMENT_MODE, deploy_safe)
    never lifts: such a worker holds until it is stopped.
    """
    logger.warning("%s", HOLDING.format(how=status.describe()))
    started = time.monotonic()
    while keep_waiting():
        time.sleep(HOLD_POLL_SECONDS)
        state.clear_cache()
        if closed() is None:
            logger.warning(RESUMING.format(seconds=time.monotonic() - started))
            return True
    return False
