"""A run's steps: each timed, printed as it ends, listed in order; work run alongside them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from deployguard.deploy.steps import FAILED, OK, SKIPPED, Alongside, Steps


def _steps(verbosity: int = 1) -> tuple[Steps, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    return Steps(lambda style, text: lines.append((style, text)), verbosity), lines


def test_each_step_is_timed_and_printed_with_its_status_as_it_ends():
    steps, lines = _steps()

    with steps.step("backup"):
        pass
    with steps.step("pre-check: clean git working tree") as skipped:
        skipped.status = SKIPPED

    assert [(step.name, step.status) for step in steps.taken] == [
        ("backup", OK),
        ("pre-check: clean git working tree", SKIPPED),
    ]
    assert all(isinstance(step.seconds, float) for step in steps.taken)
    assert [style for style, _ in lines] == ["SUCCESS", "WARNING"]
    assert lines[0][1].startswith("backup: ok (")


def test_a_step_that_raises_is_failed_and_the_error_goes_on():
    steps, lines = _steps()

    with pytest.raises(RuntimeError), steps.step("migrate"):
        raise RuntimeError("the migration broke")

    assert steps.taken[0].status == FAILED
    assert lines[0][0] == "ERROR"


def test_a_step_run_within_another_is_listed_before_it():
    steps, _ = _steps()

    with steps.step("backup") as backup, steps.step("fingerprint", before=backup):
        pass

    assert [step.name for step in steps.taken] == ["fingerprint", "backup"]


def test_details_are_printed_at_verbosity_2_and_nothing_at_0():
    quiet, silent = _steps(verbosity=0)
    loud, lines = _steps(verbosity=2)

    for steps in (quiet, loud):
        with steps.step("deploy mode on") as step:
            step.detail = {"waited": 0.0}
        steps.say("ERROR", "  a problem")

    assert silent == []
    assert lines[1:] == [("", '  {"waited": 0.0}'), ("ERROR", "  a problem")]
    assert round(loud.seconds(), 3) == loud.taken[0].seconds


def test_work_alongside_returns_its_result_and_seconds_and_its_errors(db):
    alongside = Alongside("default")
    try:
        result, seconds = alongside.start(
            lambda: threading.current_thread() is threading.main_thread()
        ).result()
        failed = alongside.start(lambda: 1 / 0)
    finally:
        alongside.shutdown()

    # In-memory SQLite is seen by this connection only: the work runs inline.
    in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()
    assert result is in_memory
    assert seconds >= 0
    with pytest.raises(ZeroDivisionError):
        failed.result()
