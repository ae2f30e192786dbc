"""Data shown, never obeyed: control characters in rows, names and files reach no terminal raw."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection

from deployguard import state
from deployguard.backup import MAGIC, MANIFEST_SUFFIX
from deployguard.terminal import printable
from documents.models import Submission
from tests.documents.fakes import raw_update_submission
from tests.factories import SubmissionFactory, UserFactory, published_draft
from tests.utils import rewriting_history, run_command

# Clear the screen, write the clipboard (OSC 52), hide what precedes (CR), reverse what
# follows (U+202E), a one-byte CSI, and a newline that forges a line of the report.
HOSTILE = "\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07\rok\u202eevil\x9b31m\nRules broken now:\n  none"
SHOWN = "\\x1b[2J\\x1b]52;c;cm0gLXJmIH4=\\x07\\rok\\u202eevil\\x9b31m\\nRules broken now:\\n  none"
# Anything a terminal would obey, other than the line ends the commands write themselves.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def test_printable_escapes_every_control_and_reordering_character():
    assert printable(HOSTILE) == SHOWN
    assert printable("tab\there\x00\x7f\u2066") == "tab\\there\\x00\\x7f\\u2066"
    assert printable("ML-003: Widgets, café, 日本語 — fine") == "ML-003: Widgets, café, 日本語 — fine"
    assert printable("two\nlines\x1b", keep_newlines=True) == "two\nlines\\x1b"
    assert printable(42) == "42"


@pytest.fixture
def hostile(db):
    """A test submission whose title, creator's name and history reason are all hostile. The
    services refuse control characters in a title, so the title is planted by SQL around them (as
    a stray script would), and the history rewritten."""
    clerk = UserFactory(username=f"clerk{HOSTILE}")
    published_draft(title="Interoperable widgets")
    row = SubmissionFactory(title="Hostile widgets", submitted_by="Test User")
    raw_update_submission(row.pk, title=HOSTILE)
    with rewriting_history("the test gives the row's history a hostile user and reason"):
        Submission.history.filter(id=row.pk).update(history_user_id=clerk.pk, history_change_reason=HOSTILE)
    row.refresh_from_db()
    return row


def _shown(stdout: str, stderr: str) -> str:
    found = RAW.findall(stdout + stderr)
    assert found == [], f"raw control characters reached the terminal: {found!r}"
    return stdout + stderr


def test_explain_row_shows_a_hostile_title_user_and_reason_escaped(hostile):
    stdout, stderr, status = run_command(
        "explain_row", "documents.submission", hostile.ml_number, no_color=True
    )
    assert status == 0
    shown = _shown(stdout, stderr)
    assert shown.startswith(f"documents.submission {hostile.pk}: {hostile.ml_number}: {SHOWN}\n")
    assert f"  user=clerk{SHOWN}  reason={SHOWN}  origin=" in shown
    assert shown.count("\nRules broken now") == 1


def test_verify_integrity_shows_where_a_hostile_row_came_from_escaped(hostile):
    stdout, stderr, status = run_command("verify_integrity", "--rule", "E007", no_color=True)
    assert status == 1
    assert f"  {hostile.pk} ({hostile.ml_number}): created by clerk{SHOWN} from " in _shown(stdout, stderr)
    report, _stderr, _status = run_command("verify_integrity", "--rule", "E007", "--format", "json")
    assert json.loads(report)["rules"][0]["samples"][0]["user"] == f"clerk{HOSTILE}"


def test_misuse_that_quotes_what_the_operator_typed_is_escaped(db):
    for args in (
        ("explain_row", "documents.submission", HOSTILE),
        ("verify_integrity", "--rule", HOSTILE),
        ("scrub_fake_data", "--restore", HOSTILE),
    ):
        stdout, stderr, status = run_command(*args, no_color=True)
        assert status == 2, args
        assert "\\x1b[2J" in _shown(stdout, stderr)


def test_deploy_mode_status_shows_a_hostile_reason_escaped(transactional_db, fast_switch):
    # Committed, so that the drain freezes the database and `status` finds the freeze agreeing.
    # The command refuses such a reason; a caller of the Python API (or an older version's
    # state row) can still leave one for `status` to show.
    assert run_command("deploy_mode", "on", "--reason", HOSTILE, no_color=True)[2] == 2
    state.switch_on(reason=HOSTILE, changed_by="a deploy script")
    try:
        stdout, stderr, status = run_command("deploy_mode", "status", no_color=True)
        assert status == 0
        assert f"(reason: {SHOWN}" in _shown(stdout, stderr)
    finally:
        assert run_command("deploy_mode", "off", "--reason", "done")[2] == 0


def test_restore_db_quotes_a_hostile_manifest_escaped(db, tmp_path):
    backup = tmp_path / f"backup{HOSTILE}.bin"
    # Begins as the engine's backups do: a file that does not is refused (2) before its manifest is read.
    backup.write_bytes(MAGIC[connection.vendor] + b"not a backup")
    backup.with_name(backup.name + MANIFEST_SUFFIX).write_text(
        json.dumps(
            {
                "engine": connection.vendor,
                "database": HOSTILE,
                "created_at": HOSTILE,
                "migrations": {},
                "fingerprints": {},
                "file": backup.name,
                "size": backup.stat().st_size,
                "sha256": "0" * 64,
            }
        )
    )
    stdout, stderr, status = run_command("restore_db", str(backup), "--yes", no_color=True)
    assert status == 1
    assert f"is a backup of {SHOWN}, and this database is" in _shown(stdout, stderr)
