"""What deployguard logs from outside (paths, headers, names, reasons) cannot start a line of its own,
fake a field or move a terminal's cursor; a request refused in deploy mode is logged once, as a warning.

A log line is trusted by whoever reads it ("Deploy mode turned OFF by ci" is believed), so a value a
client chose must never be able to end the line it is in. `escape()` writes every character that is
not printable (control characters, CR and LF, NEL U+0085, the Unicode line and paragraph separators,
ANSI escape sequences' ESC, bidirectional overrides, non-breaking spaces) and the backslash itself as
a Python-style escape, so the result is one line of printable characters and the escaping is
unambiguous. `EscapeArguments` applies it to the arguments of every record logged through
deployguard's loggers; messages built by hand must pass their values through `escape()` first.

A refusal in deploy mode is expected, not an error: `log_refusal()` writes it to the audit logger at
WARNING and marks the request, and `SkipDeployModeRefusals` keeps Django's ERROR for the same 503 out
of the logs and of ADMINS' mailboxes (a busy deploy would otherwise send one mail per refused write).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from logging.handlers import SMTPHandler
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest
from django.utils.log import AdminEmailHandler

# Every logger deployguard's modules log through; tests/deployguard/test_logs.py checks the list
# against the package's getLogger() calls.
LOGGER_NAMES = (
    "deployguard",
    "deployguard.audit",
    "deployguard.monitoring",
    "deployguard.jobs",
    "deployguard.wholesale",
)


def _escape_character(character: str) -> str:
    if character == "\\":
        return "\\\\"
    return character.encode("unicode_escape").decode("ascii")


def escape(value: object) -> str:
    """`value` as one line of printable characters: anything else, and backslashes, escaped."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and "\\" not in text:
        return text  # the common case, one C-level scan
    return "".join(
        character if character.isprintable() and character != "\\" else _escape_character(character)
        for character in text
    )


def logfmt(fields: Mapping[str, object]) -> str:
    """`key=value` pairs separated by spaces; a value with a space, `=` or `"` in it (or none at all)
    is quoted, so no value can pose as another field ("path=/x status=200" stays one path)."""
    parts = []
    for key, value in fields.items():
        text = escape(value)
        if not text or any(character in text for character in ' ="'):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _escaped_argument(value: Any) -> Any:
    # Numbers stay numbers so "%d" and "%.1f" still format them; anything else becomes its escaped text.
    if value is None or isinstance(value, numbers.Number):
        return value
    return escape(value)


class EscapeArguments(logging.Filter):
    """Escape the arguments of a record (`logger.warning("turned OFF by %s", who)`), not its format
    string: the program's own text is kept, what it interpolates cannot break the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping):
            record.args = {key: _escaped_argument(value) for key, value in args.items()}
        elif isinstance(args, tuple) and args:
            record.args = tuple(_escaped_argument(value) for value in args)
        return True


def install() -> None:
    """Put the escaping filter on each of deployguard's loggers (once, however often it is called).

    A filter on a logger sees only the records logged through that very logger, hence one per name."""
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, EscapeArguments) for existing in logger.filters):
            logger.addFilter(EscapeArguments())


# --- refusals in deploy mode: expected, logged once as a warning, never mailed as errors ---------

AUDIT_LOGGER = "deployguard.audit"
REFUSED_MARK = "deployguard_refused_in_deploy_mode"
REFUSED_LINE = "Refused in deploy mode: "
MAILING_HANDLERS: tuple[type[logging.Handler], ...] = (AdminEmailHandler, SMTPHandler)


def log_refusal(request: HttpRequest, status_code: int) -> None:
    """Mark the request as refused by deploy mode and log it once, at WARNING, to the audit logger.

    The mark is what `SkipDeployModeRefusals` reads, so that Django's own log of the 503 (an
    ERROR on django.request, mailed to ADMINS by default) is dropped: the refusal is expected."""
    if getattr(request, REFUSED_MARK, False):
        return
    setattr(request, REFUSED_MARK, True)
    # Refused before the session loads (the middleware comes first), the user is unknown: "-".
    user = getattr(request, "user", None)
    try:
        authenticated = user is not None and user.is_authenticated
        username = "-" if user is None else user.get_username() if authenticated else "anonymous"
    except DatabaseError:  # the session could not be read: the refusal is logged all the same
        username = "?"
    fields = {"user": username, "method": request.method, "path": request.path, "status": status_code}
    logging.getLogger(AUDIT_LOGGER).warning(REFUSED_LINE + logfmt(fields), extra={"audit": fields})


def was_refused(request: object) -> bool:
    return bool(getattr(request, REFUSED_MARK, False))


class SkipDeployModeRefusals(logging.Filter):
    """Drop the records Django logs for a request deploy mode refused (django.request's "Service
    Unavailable" ERROR): deployguard's audit logger has logged it already, as a warning. Put it on
    the django.request logger (or on each mailing handler) in LOGGING; check deployguard.E011 insists."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not was_refused(getattr(record, "request", None))


def _skips_refusals(filters: list[Any]) -> bool:
    return any(isinstance(candidate, SkipDeployModeRefusals) for candidate in filters)


def handlers_mailing_refusals(logger_name: str = "django.request") -> list[logging.Handler]:
    """The handlers that would mail a refused request's ERROR, as logging is configured now.

    A record logged on `logger_name` passes that logger's own filters (only its own: a parent's
    filters never see it), then goes to the handlers of the logger and of its parents while
    `propagate` holds; each handler applies its level and its filters."""
    logger = logging.getLogger(logger_name)
    if logger.disabled or not logger.isEnabledFor(logging.ERROR) or _skips_refusals(logger.filters):
        return []
    mailing: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                isinstance(handler, MAILING_HANDLERS)
                and handler.level <= logging.ERROR
                and not _skips_refusals(handler.filters)
            ):
                mailing.append(handler)
        current = current.parent if current.propagate else None
    return mailing
