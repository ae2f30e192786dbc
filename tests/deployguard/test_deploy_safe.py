"""manage.py deploy_safe, the command: its help and its misuse (exit 2). Deploys end to end are in
tests/deployguard/deploy/test_end_to_end.py."""

from __future__ import annotations

import pytest

from deployguard.management.commands.deploy_safe import HELP
from tests.utils import run_command


def test_help_documents_every_exit_status_and_that_the_backup_comes_before_the_freeze():
    for text in (
        "0 deployed and verified",
        "1 verification failed",
        "2 misuse",
        "3 a pre-check failed, nothing was touched",
        "4 the",
        "taken while the site still writes -> deploy mode on -> the backup proved at the freeze",
        "with the freeze window",
    ):
        assert text in " ".join(HELP.split()), text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--database", "elsewhere"), "--database 'elsewhere' is not in DATABASES (default)."),
        (("--allow-data-migration", "nodot"), "--allow-data-migration 'nodot': write it as APP.NAME."),
        (
            ("--expected-minutes", "nan"),
            "--expected-minutes: expected minutes must be a number more than 0 and at most 10080 (a week).",
        ),
    ],
)
def test_misuse_exits_2_before_any_step(db, args, message):
    stdout, stderr, code = run_command("deploy_safe", *args)

    assert code == 2
    assert message in stderr
    assert stdout == ""
