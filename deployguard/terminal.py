"""What the operator commands write to a terminal: data shown, never obeyed; progress on a tty.

Rows hold text that anyone who can submit a document chose: a title can carry escape
sequences that clear the screen, rewrite earlier lines, set the window title or write the
operator's clipboard (OSC 52), a carriage return that hides what precedes it, or an
invisible direction override that reorders what follows. Every command passes data through
`printable()` before it reaches a terminal.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls (0x9b is a one-byte CSI on some terminals), and the
# invisible characters that reorder or hide text: bidirectional overrides and isolates,
# zero-width joiners and marks, the line and paragraph separators, the byte-order mark.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """`value` as text that a terminal shows and does not obey: every control character and
    invisible reordering character is written as its escape (ESC as \\x1b, CR as \\r, U+202E as
    \\u202e). A newline is escaped too, so data cannot forge a line of the report, unless
    `keep_newlines` (for a message the program composed of several lines)."""
    text = str(value)
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)
