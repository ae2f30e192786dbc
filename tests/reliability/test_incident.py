"""The incident end to end: a release whose migration, receiver, start-up hook and job try to
publish while clients keep POSTing to the admin; deploy_safe must leave the one legitimate
document, refuse or roll back every attempt, name each source and alert the admins."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy_apps import support as deploy_support
from tests.deploy_apps.support import BASE_DIR, Scratch
from tests.reliability.rows import compare, scratch_row_hashes
from tests.reliability.support_deploy import (
    mailed_env,
    subjects,
)

LEGITIMATE = (["ML-001"], ["rfc1"])
INCIDENT = BASE_DIR / "tests" / "deploy_apps" / "incident"
scratch, scratch_template = deploy_support.scratch, deploy_support.scratch_template  # fixtures
SEEDED = re.compile(r"incident: the (.+) could not seed (\S+)")


def source_line(path: Path, function: str) -> str:
    """`file:line in function()` of the first ORM create in `function`, as the report names it."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s*def {re.escape(function)}\(", line))
    number = next(i for i in range(start, len(lines)) if ".objects.create(" in lines[i]) + 1
    return f"{path.relative_to(BASE_DIR)}:{number} in {function}()"


SOURCES = {
    "data migration": source_line(INCIDENT / "migrations" / "0002_seed_submissions.py", "seed"),
    "post_migrate receiver": source_line(INCIDENT / "apps.py", "publish_after_migrate"),
    "ready() hook": source_line(INCIDENT / "apps.py", "ready"),
}


def refusals_named(report: dict) -> dict[str, int]:
    """How many refused writes the report pins on each source."""
    return {
        source: sum(
            1
            for writer in report["blocked_writes"]
            if writer["exception"] == "DeployModeActive" and writer["where"].startswith(where)
        )
        for source, where in SOURCES.items()
    }


def documents(scratch: Scratch) -> tuple[list[str], list[str]]:
    state = scratch.inspect()
    return state["submissions"], state["drafts"]


def test_a_release_whose_code_swallows_its_refused_writes_is_still_rolled_back_named_and_alerted(
    scratch: Scratch, record_scenario
):
    """A release whose code catches its refused writes still fails the deploy: rolled back, named, alerted.

    Its data migration, post_migrate receiver and ready() hook each catch and log the refusal,
    as the incident's code did: migrate exits 0, yet the report names each by file:line.
    """
    before = scratch_row_hashes(scratch)

    result = scratch.deploy(apps="incident", **mailed_env(scratch))

    assert result.returncode == 1, result.stdout + result.stderr
    report = scratch.report()
    assert report["status"] == "rolled_back"
    assert refusals_named(report) == {"data migration": 2, "post_migrate receiver": 1, "ready() hook": 1}
    for where in SOURCES.values():
        assert where in result.stderr  # the one-line message names each place too
    assert subjects(scratch) == [f"[Django] deploy_safe {report['deploy_id']}: rolled_back"]
    assert documents(scratch) == LEGITIMATE
    assert not scratch.inspect()["deploy_mode"]
    # deploy_safe's own process runs the ready() hook too, frozen from start-up: refused there.
    own = len(SEEDED.findall(result.stderr))
    refused = len(report["blocked_writes"]) + own
    record_scenario(
        "incident sources that swallow their refusals",
        attempts=refused,
        writes_refused=refused,
        changes=compare(before, scratch_row_hashes(scratch)),
        exit_status=result.returncode,
        sources=sorted(SOURCES.values()),
    )
