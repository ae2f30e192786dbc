"""What deployguard logs from outside (paths, headers, names, reasons) cannot start a line of its own,
fake a field or move a terminal's cursor: every such value is escaped on the way into a log record.

A log line is trusted by whoever reads it ("Deploy mode turned OFF by ci" is believed), so a value a
client chose must never be able to end the line it is in. `escape()` writes every character that is
not printable (control characters, CR and LF, NEL U+0085, the Unicode line and paragraph separators,
ANSI escape sequences' ESC, bidirectional overrides, non-breaking spaces) and the backslash itself as
a Python-style escape, so the result is one line of printable characters and the escaping is
unambiguous. `EscapeArguments` applies it to the arguments of every record logged through
deployguard's loggers; messages built by hand must pass their values through `escape()` first.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import Any

# Every logger deployguard's modules log through; tests/deployguard/test_logs.py checks the list
# against the package's getLogger() calls.
LOGGER_NAMES = ("deployguard", "deployguard.audit", "deployguard.monitoring", "deployguard.jobs")


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
