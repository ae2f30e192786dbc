"""The files operators name on the command line (a baseline, a backup and its manifest, a report):
checked for kind and size before a byte is read, and read in bounded pieces.

A FIFO, a terminal, /dev/zero or a directory given where a file belongs is refused at once, not
read until memory runs out or waited on for ever; so is a file larger than its kind can be, or a
line longer than any this project writes. Opening never blocks: O_NONBLOCK, then fstat() on what
was opened (no gap between the check and the read for the path to be swapped in).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

MiB = 1 << 20
GiB = 1 << 30
MAX_LINE = MiB
"""The longest line a baseline or manifest holds (a baseline's header lists every table: far less)."""

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)


class BadFile(Exception):
    """A file argument that cannot be what it should be; the message says what it is instead."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | Path, *, what: str, max_bytes: int | None, text: bool = True) -> IO:
    """Open `path` to read, once it is proved a regular file of at most `max_bytes` (None: any size)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise BadFile(f"Cannot read {what} {path}: {error.strerror or error}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadFile(
                f"{what.capitalize()} {path} is {_kind(info.st_mode)}, not a file: give the path of a file."
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise BadFile(
                f"{what.capitalize()} {path} is {info.st_size} bytes, more than the {max_bytes} one can be: "
                "it is not the file you mean."
            )
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r", encoding="utf-8", newline="\n") if text else os.fdopen(fd, "rb")


def check_regular(path: str | Path, *, what: str, max_bytes: int | None) -> None:
    """Refuse (BadFile) unless `path` is a regular file of at most `max_bytes`."""
    open_regular(path, what=what, max_bytes=max_bytes, text=False).close()


def lines(handle: IO[str], *, what: str, path: str | Path, limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of a text file opened by open_regular(), none longer than `limit` characters."""
    while True:
        try:
            line = handle.readline(limit + 1)
        except UnicodeDecodeError:
            raise BadFile(f"{what.capitalize()} {path} is not UTF-8 text.") from None
        if not line:
            return
        if len(line) > limit:
            raise BadFile(
                f"{what.capitalize()} {path} has a line longer than {limit} characters: it is not {what}."
            )
        yield line


def read_text(path: str | Path, *, what: str, max_bytes: int) -> str:
    """The whole of a small text file (a manifest), checked first."""
    with open_regular(path, what=what, max_bytes=max_bytes) as handle:
        try:
            return handle.read(max_bytes + 1)
        except UnicodeDecodeError:
            raise BadFile(f"{what.capitalize()} {path} is not UTF-8 text.") from None


def check_output(path: str | Path, *, what: str) -> None:
    """Refuse (BadFile) an output path that is something other than a regular file, or whose
    directory does not exist: found before the work whose result it would hold."""
    target = Path(path)
    try:
        info = target.stat()
    except FileNotFoundError:
        if not target.parent.is_dir():
            raise BadFile(
                f"{what.capitalize()} {path}: the directory {target.parent} does not exist."
            ) from None
        return
    except OSError as error:
        raise BadFile(f"{what.capitalize()} {path}: {error.strerror or error}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadFile(
            f"{what.capitalize()} {path} is {_kind(info.st_mode)}: give the path of a file to write."
        )


def write_text(path: str | Path, text: str, *, what: str) -> None:
    """Write `text` to a regular file at `path` (created or replaced), never blocking on a FIFO."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadFile(
                f"{what.capitalize()} {path} is {_kind(info.st_mode)}: give the path of a file to write."
            )
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as out:
            out.write(text)
    finally:
        os.close(fd)


def durable(path: Path) -> None:
    """Write `path` (and its directory entry) through to the disk, before the freeze relies on
    it. A backup still in the page cache is lost with the machine; and its writeback would
    otherwise compete, inside the freeze window, with the commits of migrate: at 1,000,000 rows
    on SQLite the migrate step took 2.54 s without this and 1.58 s with it (a bare migrate: 1.63 s)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
