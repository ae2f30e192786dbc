"""How a deploy_safe run is told: timed steps, the exit statuses, and work alongside the steps.

Each step is timed and printed as it ends; the run's report lists them in order. A run ends
by raising Stop with its exit status and the one line the operator reads.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")

EXIT_DEPLOYED, EXIT_RESTORED, EXIT_MISUSE, EXIT_PRECHECK, EXIT_HUMAN = 0, 1, 2, 3, 4

Output = Callable[[str, str], None]
"""Where a run's lines go: (style name, text); the command passes its styled stdout."""

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class Step:
    name: str
    status: str = OK
    seconds: float = 0.0
    detail: Any = None


class Stop(Exception):
    """Ends the run with `exit_status`; `message` is the one line the operator reads."""

    def __init__(self, exit_status: int, message: str) -> None:
        self.exit_status = exit_status
        self.message = message
        super().__init__(message)


class Steps:
    """A run's steps, in the order reported, each timed and printed as it ends."""

    def __init__(self, output: Output, verbosity: int) -> None:
        self.output = output
        self.verbosity = verbosity
        self.taken: list[Step] = []

    @contextlib.contextmanager
    def step(self, name: str, *, before: Step | None = None) -> Iterator[Step]:
        """Time a step; `before`: a step still running that this one runs within, listed after it.
        An exception marks it failed; so does setting its status."""
        step = Step(name)
        started = time.perf_counter()
        where = next((i for i, s in enumerate(self.taken) if s is before), len(self.taken))
        self.taken.insert(where, step)
        try:
            yield step
        except BaseException:
            step.status = FAILED
            raise
        finally:
            step.seconds = round(time.perf_counter() - started, 3)
            if self.verbosity >= 1:
                style = "SUCCESS" if step.status == OK else "WARNING" if step.status == SKIPPED else "ERROR"
                self.output(style, f"{step.name}: {step.status} ({step.seconds:.2f}s)")
            if self.verbosity >= 2 and step.detail:
                self.output("", f"  {json.dumps(step.detail, default=str)}")

    def put_first(self, earlier: list[Step]) -> None:
        """Steps an earlier process took (a killed deploy's, from its record) go before these."""
        self.taken[:0] = earlier

    def say(self, style: str, text: str) -> None:
        """A line of its own, shown at verbosity 1 and above."""
        if self.verbosity >= 1:
            self.output(style, text)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(step) for step in self.taken]

    def seconds(self) -> float:
        return round(sum(step.seconds for step in self.taken), 3)


class Alongside:
    """Work on threads of their own, to overlap with what the main thread does next."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="deploy_safe")

    def start(self, work: Callable[[], T]) -> Future[tuple[T, float]]:
        """Start `work`; the future holds its result and the seconds it took. Its database
        connections are its own and are closed when it ends. Inline when the database is
        SQLite in memory, which another connection would not see."""

        def timed() -> tuple[T, float]:
            started = time.perf_counter()
            try:
                return work(), round(time.perf_counter() - started, 3)
            finally:
                if threading.current_thread() is not threading.main_thread():
                    connections.close_all()

        connection = connections[self.using]
        if connection.vendor == "sqlite" and connection.is_in_memory_db():
            future: Future[tuple[T, float]] = Future()
            try:
                future.set_result(timed())
            except Exception as error:
                future.set_exception(error)
            return future
        return self._pool.submit(timed)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
