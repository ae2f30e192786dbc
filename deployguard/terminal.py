"""What the operator commands write to a terminal: data shown, never obeyed; progress on a tty.

Rows hold text that anyone who can submit a document chose: a title can carry escape
sequences that clear the screen, rewrite earlier lines, set the window title or write the
operator's clipboard (OSC 52), a carriage return that hides what precedes it, or an
invisible direction override that reorders what follows. Every command passes data through
`printable()` before it reaches a terminal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from deployguard.humanize import span

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


class Progress:
    """One line of progress redrawn in place on a terminal: "backup_db: 3/7 tables, 120,000 rows,
    4s elapsed, about 6 seconds left". Nothing at all when the output is not a terminal (piped,
    redirected, call_command into a buffer) or the command runs with --verbosity 0, so that what
    a script reads is the command's output alone. The line is cleared when the work ends, before
    the command prints its result; it goes to stderr, so stdout stays the result.
    """

    # A redraw at most this often: the line is for eyes, and a terminal is slow.
    REDRAW_SECONDS = 0.2

    def __init__(
        self,
        stream: Any,
        *,
        what: str,
        enabled: bool,
        total: int | None = None,
        unit: str = "tables",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.what, self.enabled = stream, what, enabled
        self.total, self.unit, self.clock = total, unit, clock
        self.started = clock()
        self.done, self.rows, self.phase = 0, 0, ""
        self._drawn_at: float | None = None

    @classmethod
    def for_command(cls, command: Any, verbosity: int, *, what: str, **kwargs: Any) -> Progress:
        """Progress for a management command: drawn on its stderr when both its stdout and its
        stderr are a terminal (`… | less` or `--format json > file` get none) and --verbosity
        is 1 or more."""
        on_terminal = _is_terminal(command.stdout) and _is_terminal(command.stderr)
        return cls(command.stderr, what=what, enabled=verbosity >= 1 and on_terminal, **kwargs)

    def __enter__(self) -> Progress:
        self.draw(force=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.clear()

    def advance(
        self, done: int | None = None, *, total: int | None = None, rows: int = 0, phase: str | None = None
    ) -> None:
        """`done` units finished so far (default: one more) of `total` (if it is known only now),
        `rows` more rows, now doing `phase`."""
        self.done = self.done + 1 if done is None else done
        if total is not None:
            self.total = total
        self.rows += rows
        if phase is not None:
            self.phase = phase
        self.draw(force=self.total is not None and self.done >= self.total)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.draw(force=True)

    def line(self) -> str:
        elapsed = self.clock() - self.started
        parts = [f"{self.what}:"]
        if self.phase:
            parts.append(f"{printable(self.phase)},")
        if self.unit and (self.total is not None or self.done):  # unit "": work only timed
            count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
            parts.append(f"{count} {self.unit},")
        if self.rows:
            parts.append(f"{self.rows:,} rows,")
        parts.append(f"{elapsed:.0f}s elapsed")
        if self.total and 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            parts[-1] += f", about {span(left)} left"
        return " ".join(parts)

    def draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self.REDRAW_SECONDS:
            return
        self._drawn_at = now
        self._write(f"\r{self.line()}{_CLEAR_TO_END}")

    def clear(self) -> None:
        if self.enabled and self._drawn_at is not None:
            self._write(f"\r{_CLEAR_TO_END}")

    def _write(self, text: str) -> None:
        # Django's stderr wrapper would colour the line as an error and end it with a newline.
        self.stream.write(text, style_func=lambda text: text, ending="")
        self.stream.flush()


_CLEAR_TO_END = "\x1b[K"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def table_progress(progress: Progress) -> Callable[[int, int, int], None]:
    """An `on_table(done, total, rows)` for the fingerprinting functions that advances `progress`;
    after the last table the work left is checking the copy or the restore."""

    def on_table(done: int, total: int, rows: int) -> None:
        progress.advance(done, total=total, rows=rows, phase="checking" if done == total else None)

    return on_table
