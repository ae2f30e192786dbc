"""Running one job deploy-aware, for every kind of worker: inside a transaction, put back on a freeze.

A worker runs each job in one database transaction (its queue bookkeeping included, where the
queue is in the database), so that:
- `deploy_mode on` waits for a running job that has written, like any writer (the drain);
- a job that meets the freeze (deployguard.DeployModeActive, the database's own refusal, or
  any error while deploy mode is on) leaves nothing behind: the transaction is rolled back and
  the job is put back, to run again once deploy mode is off. Never marked failed, never lost,
  and never run twice to completion, since its first run's writes were rolled back;
- a refusal the job catches and swallows is seen all the same (the write guard tells
  deployguard about every refusal before raising it), and the job is put back as well.

Each put-back is recorded (RefusedJobWrite, with the task's path) for the deploy's report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from django.db import DatabaseError, connections, transaction

from deployguard import freeze, guard, state
from deployguard.exceptions import DeployModeActive
from deployguard.models_jobs import RefusedJobWrite
from deployguard.origin import origin, process_origin

logger = logging.getLogger("deployguard.jobs")

PUT_BACK = "Job {task} ({job_id}) met the freeze and was put back: it runs again after the deploy. {error}"

# Refusals raised while a job runs on this thread; None outside a job.
_refusals: ContextVar[list[DeployModeActive] | None] = ContextVar("deployguard_job_refusals", default=None)


class _SwallowedRefusal(Exception):
    """Rolls back the savepoint of a job that caught a refusal and carried on."""


@dataclass
class Outcome:
    """How a job's run ended: `done` (its value), `failed` (its error) or `held` (put back)."""

    kind: Literal["done", "failed", "held"]
    value: Any = None
    error: BaseException | None = None
    refusals: list[DeployModeActive] = field(default_factory=list)

    def describe_error(self) -> tuple[str, str]:
        """(exception class, message) of what put the job back."""
        error = self.refusals[0] if self.refusals else self.error
        if error is None:
            return "", ""
        return type(error).__name__, str(error)


@contextmanager
def job_transaction(using: str) -> Iterator[None]:
    """A transaction that takes SQLite's write lock at once (BEGIN IMMEDIATE), whatever the
    site's transaction_mode: two workers must not both read a job and then both try to claim it."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        with transaction.atomic(using=using):
            yield
        return
    if not hasattr(connection, "transaction_mode"):
        connection.get_connection_params()
    previous = connection.transaction_mode  # type: ignore[attr-defined]
    connection.transaction_mode = "IMMEDIATE"  # type: ignore[attr-defined]
    try:
        with transaction.atomic(using=using):
            yield
    finally:
        connection.transaction_mode = previous  # type: ignore[attr-defined]


def note_refusal(refusal: DeployModeActive) -> None:
    """A write-guard refusal listener: remembers refusals raised inside a running job."""
    seen = _refusals.get()
    if seen is not None:
        seen.append(refusal)


def connect_receivers() -> None:
    if note_refusal not in guard.refusal_listeners:
        guard.refusal_listeners.append(note_refusal)


def _met_the_freeze(error: BaseException) -> bool:
    """Whether an error a job raised counts as the deploy's: a refusal, or any error at all
    while deploy mode is on (read afresh), which then retries it after the deploy."""
    if isinstance(error, DeployModeActive) or (isinstance(error, DatabaseError) and freeze.is_refusal(error)):
        return True
    state.clear_cache()
    return state.current().enabled


def run(call: Callable[[], Any], *, label: str, using: str = "default") -> Outcome:
    """Run `call()` in a savepoint of the caller's transaction (which must be open) and say how it ended.

    On `held` the caller rolls its whole transaction back; on `failed` only the job's own
    writes are gone (the savepoint), so the caller can record the failure in the same transaction.
    """
    seen: list[DeployModeActive] = []
    token = _refusals.set(seen)
    try:
        with origin(label):
            try:
                with transaction.atomic(using=using):
                    value = call()
                    if seen:
                        raise _SwallowedRefusal
            except _SwallowedRefusal:
                return Outcome("held", refusals=seen)
            except Exception as error:
                if seen or _met_the_freeze(error):
                    return Outcome("held", error=error, refusals=seen)
                return Outcome("failed", error=error)
        return Outcome("done", value=value)
    finally:
        _refusals.reset(token)


def record_put_back(outcome: Outcome, *, task_path: str, job_id: str, using: str = "default") -> None:
    """Log a job put back and record it for the deploy's report; outside the job's (rolled
    back) transaction. A failure to record is logged, never raised: the job is safe either way."""
    exception, message = outcome.describe_error()
    logger.warning("%s", PUT_BACK.format(task=task_path, job_id=job_id, error=message))
    status = state.current()
    try:
        RefusedJobWrite.objects.using(using).create(
            task_path=task_path[:255],
            job_id=str(job_id)[:64],
            worker=process_origin(),
            exception=exception[:255],
            message=message,
            deploy_id=status.deploy_id if status.enabled else "",
        )
    except DatabaseError:
        logger.exception("Could not record the put-back of job %s (%s)", job_id, task_path)


def refused_writes(
    *, since: datetime, until: datetime | None = None, using: str = "default"
) -> list[dict[str, str]]:
    """Jobs put back because they met the freeze between `since` and `until`, oldest first, as
    the deploy report lists blocked writes: for `deploy_safe` to add to its own."""
    rows = RefusedJobWrite.objects.using(using).filter(at__gte=since)
    if until is not None:
        rows = rows.filter(at__lte=until)
    return [
        {
            "source": "job",
            "task": row.task_path,
            "job_id": row.job_id,
            "where": f"job {row.task_path} ({row.worker})",
            "exception": row.exception,
            "message": row.message,
            "at": row.at.isoformat(),
        }
        for row in rows
    ]
