"""Nothing a client sends can forge a line of deployguard's logs: paths, names, reasons are escaped."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from deployguard import logs, state

FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
FAKE = "Deploy mode turned OFF by ops@deploy-host: release done"
# Every way to end a line, or to rewrite one on a terminal, spelled as a URL would carry it.
CRAFTED_PATHS = {
    "lf": ("/x%0a", "\n"),
    "crlf": ("/x%0d%0a", "\r\n"),
    "cr": ("/x%0d", "\r"),
    "nel-u0085": ("/x%c2%85", "\x85"),
    "line-separator-u2028": ("/x%e2%80%a8", "\u2028"),
    "paragraph-separator-u2029": ("/x%e2%80%a9", "\u2029"),
    "vertical-tab": ("/x%0b", "\x0b"),
    "form-feed": ("/x%0c", "\x0c"),
    "ansi-clear-line": ("/x%1b%5b2K%0d", "\x1b[2K\r"),
    "right-to-left-override": ("/x%e2%80%ae", "\u202e"),
}
BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e]")


def one_clean_line(record: logging.LogRecord) -> str:
    line = FORMAT.format(record)
    assert len(line.splitlines()) == 1, line
    assert not BREAKS.search(line), line
    return line


@pytest.mark.parametrize(("crafted", "raw"), CRAFTED_PATHS.values(), ids=CRAFTED_PATHS.keys())
def test_a_crafted_url_cannot_add_a_line_to_the_audit_log(client, db, caplog, crafted, raw):
    fake = FAKE.replace(" ", "%20")
    with caplog.at_level(logging.INFO, logger="deployguard.audit"):
        response = client.post(f"{crafted}{fake}{crafted[2:]}", {})

    assert response.status_code == 404
    [record] = [r for r in caplog.records if r.name == "deployguard.audit"]
    line = one_clean_line(record)
    escaped = raw.encode("unicode_escape").decode("ascii")
    assert f'path="/x{escaped}{FAKE}{escaped}"' in line
    # The structured copy keeps the value as sent, for handlers that serialise it themselves.
    assert record.audit["path"] == f"/x{raw}{FAKE}{raw}"


def test_a_path_cannot_pose_as_another_field_of_the_audit_line(client, db, caplog):
    with caplog.at_level(logging.INFO, logger="deployguard.audit"):
        client.post("/x%20status=200%20user=admin%20deploy_mode=off", {})

    [record] = [r for r in caplog.records if r.name == "deployguard.audit"]
    line = one_clean_line(record)
    assert 'path="/x status=200 user=admin deploy_mode=off" status=404' in line
    assert re.sub(r'"[^"]*"', "", line).count(" status=") == 1


def test_a_user_name_with_a_line_break_is_escaped_in_the_audit_log(client, db, caplog):
    user = get_user_model().objects.create_user(username=f"mallory\n{FAKE}", password="x")
    client.force_login(user)
    with caplog.at_level(logging.INFO, logger="deployguard.audit"):
        client.post("/nowhere/", {})

    [record] = [r for r in caplog.records if r.name == "deployguard.audit"]
    assert f'user="mallory\\n{FAKE}"' in one_clean_line(record)


def test_a_reason_with_a_line_break_is_escaped_where_deployguard_logs_the_switch(db, caplog, fast_switch):
    """The admin's reason is a textarea: the line saying who switched keeps it on one line."""
    with caplog.at_level(logging.WARNING, logger="deployguard"):
        state.enable(reason=f"release 42\n{FAKE}\x1b[1A", changed_by="ops\r\nDeploy mode turned ON by x")

    [record] = [r for r in caplog.records if r.getMessage().startswith("Deploy mode turned ON")]
    line = one_clean_line(record)
    assert line.endswith(
        f"Deploy mode turned ON by ops\\r\\nDeploy mode turned ON by x: release 42\\n{FAKE}\\x1b[1A"
    )


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain text, unchanged", "plain text, unchanged"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("nel\x85", "nel\\x85"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nbsp\u00a0", "nbsp\\xa0"),
        ("already \\n escaped", "already \\\\n escaped"),
        ("café ünïcode 文字", "café ünïcode 文字"),
        (b"bytes\n", "b'bytes\\\\n'"),
    ],
)
def test_escape_writes_every_unprintable_character_and_the_backslash_as_an_escape(value, escaped):
    assert logs.escape(value) == escaped


def test_logfmt_quotes_values_with_spaces_equals_signs_quotes_or_nothing():
    assert logs.logfmt({"a": "x", "b": "two words", "c": 'say "hi"', "d": "k=v", "e": "", "f": 12}) == (
        'a=x b="two words" c="say \\"hi\\"" d="k=v" e="" f=12'
    )


def test_numbers_keep_their_format_and_other_arguments_are_escaped(caplog):
    with caplog.at_level(logging.INFO, logger="deployguard"):
        logging.getLogger("deployguard").info("%d rows, %.1f ms, %s, %r", 3, 2.25, ValueError("x\ny"), None)

    assert caplog.records[-1].getMessage() == "3 rows, 2.2 ms, x\\ny, None"


def test_every_logger_deployguard_logs_through_escapes_its_arguments():
    package = Path(logs.__file__).parent
    used = set()
    for path in package.rglob("*.py"):
        used |= set(re.findall(r"""getLogger\(["']([^"']+)["']\)""", path.read_text()))

    assert used <= set(logs.LOGGER_NAMES), f"add {sorted(used - set(logs.LOGGER_NAMES))} to LOGGER_NAMES"
    for name in logs.LOGGER_NAMES:
        assert any(isinstance(f, logs.EscapeArguments) for f in logging.getLogger(name).filters), name


# --- refusals in deploy mode are expected: one audit WARNING, no ERROR, no mail ------------------

ADMINS = [("Ops", "ops@example.com")]


@pytest.fixture
def request_logger() -> logging.Logger:
    return logging.getLogger("django.request")


def refusal_records(caplog) -> tuple[list[logging.LogRecord], list[logging.LogRecord]]:
    audit = [r for r in caplog.records if r.name == "deployguard.audit"]
    django_request = [r for r in caplog.records if r.name == "django.request"]
    return audit, django_request


def test_a_refused_request_is_logged_once_as_a_warning_and_never_mailed(
    client, deploy_mode_on, caplog, settings, mailoutbox
):
    settings.ADMINS = ADMINS
    with caplog.at_level(logging.INFO):
        response = client.post("/admin/auth/group/add/%0aDeploy%20mode%20turned%20OFF", {"name": "x"})

    assert response.status_code == 503
    audit, django_request = refusal_records(caplog)
    assert [(r.levelname, r.getMessage()) for r in audit] == [
        (
            "WARNING",
            "Refused in deploy mode: user=- method=POST "
            'path="/admin/auth/group/add/\\nDeploy mode turned OFF" status=503',
        )
    ]
    assert django_request == []
    assert mailoutbox == []


def test_without_the_filter_django_would_mail_every_refusal_and_the_check_says_so(
    client, deploy_mode_on, caplog, settings, mailoutbox, request_logger, monkeypatch
):
    """The hazard the filter and check deployguard.E011 exist for: Django's default logging."""
    from deployguard.checks import check_refusals_not_mailed

    settings.ADMINS = ADMINS
    monkeypatch.setattr(request_logger, "filters", [])

    [error] = check_refusals_not_mailed()
    assert error.id == "deployguard.E011"
    assert "django.utils.log.AdminEmailHandler" in error.msg
    with caplog.at_level(logging.INFO):
        assert client.post("/admin/auth/group/add/", {"name": "x"}).status_code == 503
    assert [r.levelname for r in refusal_records(caplog)[1]] == ["ERROR"]
    assert len(mailoutbox) == 1


def test_the_project_logging_passes_the_refusal_check():
    from deployguard.checks import check_refusals_not_mailed

    assert check_refusals_not_mailed() == []


@pytest.mark.parametrize(
    "arrangement",
    ["filter-on-the-handler", "not-propagated", "handler-above-error", "no-mail-handler"],
)
def test_the_refusal_check_passes_when_no_mail_handler_would_see_a_refusal(
    arrangement, request_logger, monkeypatch
):
    from deployguard.checks import check_refusals_not_mailed

    monkeypatch.setattr(request_logger, "filters", [])
    mailer = next(h for h in logging.getLogger("django").handlers if isinstance(h, logs.MAILING_HANDLERS))
    if arrangement == "filter-on-the-handler":
        monkeypatch.setattr(mailer, "filters", [*mailer.filters, logs.SkipDeployModeRefusals()])
    elif arrangement == "not-propagated":
        monkeypatch.setattr(request_logger, "propagate", False)
    elif arrangement == "handler-above-error":
        monkeypatch.setattr(mailer, "level", logging.CRITICAL)
    else:
        monkeypatch.setattr(logging.getLogger("django"), "handlers", [logging.StreamHandler()])

    assert check_refusals_not_mailed() == []


def test_the_refusal_check_fails_for_a_mail_handler_on_django_request_itself(request_logger, monkeypatch):
    """A filter on the parent "django" logger would not help: a logger's filters see its own records only."""
    from logging.handlers import SMTPHandler

    from deployguard.checks import check_refusals_not_mailed

    monkeypatch.setattr(request_logger, "filters", [])
    monkeypatch.setattr(logging.getLogger("django"), "filters", [logs.SkipDeployModeRefusals()])
    monkeypatch.setattr(request_logger, "handlers", [SMTPHandler("localhost", "a@b.c", ["d@e.f"], "x")])

    assert [e.id for e in check_refusals_not_mailed()] == ["deployguard.E011"]


def test_the_filter_keeps_every_record_but_those_of_refused_requests(rf):
    refused, served = rf.post("/a"), rf.post("/b")
    logs.log_refusal(refused, 503)

    def record(request):
        made = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "Service Unavailable", (), None
        )
        made.request = request
        return made

    skip = logs.SkipDeployModeRefusals()
    assert skip.filter(record(refused)) is False
    assert skip.filter(record(served)) is True
    assert skip.filter(logging.LogRecord("django.request", logging.ERROR, __file__, 1, "x", (), None)) is True
