"""Long commands show progress on a terminal and nothing when piped or at --verbosity 0."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from io import StringIO

from django.core.management.base import OutputWrapper

from deployguard.terminal import Progress
from tests.deploy_apps.support import BASE_DIR, PYTHON, TIMEOUT, Scratch, subprocess_env

PROGRESS = re.compile(r"\r[^\r\n]*\x1b\[K")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_tables_and_rows_and_estimates_what_is_left():
    clock, screen = Clock(), Terminal()
    progress = Progress(OutputWrapper(screen), what="backup_db", enabled=True, total=4, clock=clock)
    with progress:
        clock.now += 3
        progress.advance(rows=1200)
        clock.now += 0.05  # within the redraw interval: not drawn
        progress.advance(rows=5)
        clock.now += 3
        progress.advance(4, rows=10, phase="checking")
    assert screen.getvalue().split("\r") == [
        "",
        "backup_db: 0/4 tables, 0s elapsed\x1b[K",
        "backup_db: 1/4 tables, 1,200 rows, 3s elapsed, about 9 seconds left\x1b[K",
        "backup_db: checking, 4/4 tables, 1,215 rows, 6s elapsed\x1b[K",
        "\x1b[K",
    ]


def test_progress_writes_nothing_when_disabled():
    screen = Terminal()
    with Progress(OutputWrapper(screen), what="x", enabled=False, total=2) as progress:
        progress.advance()
    assert screen.getvalue() == ""


def _in_terminal(scratch: Scratch, *args: str, stdout_piped: bool = False) -> tuple[int, str]:
    """manage.py in a pseudo-terminal, as an operator types it: (exit status, what the screen got).
    `stdout_piped`: stdout goes to a pipe (`manage.py … | less`), only stderr to the terminal."""
    main, secondary = pty.openpty()
    env = subprocess_env(
        scratch.url, DEPLOYGUARD_STATE_CACHE_SECONDS="0", DEPLOYGUARD_BACKUP_DIR=str(scratch.backup_dir)
    )
    process = subprocess.Popen(
        [PYTHON, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR, env=env, stdin=secondary, stderr=secondary,
        stdout=subprocess.DEVNULL if stdout_piped else secondary,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    status = process.wait(timeout=TIMEOUT)
    return status, b"".join(chunks).decode().replace("\r\n", "\n")


def _cases(scratch: Scratch) -> list[tuple[list[str], str]]:
    """(arguments, a progress line they must show) for each long command."""
    backup = str(scratch.directory / "kept" / "backup.bin")
    return [
        (["verify_integrity"], r"verify_integrity: checking rules, 2/2 tables, \d+s elapsed"),
        (["scrub_fake_data"], r"scrub_fake_data: finding rows, 2/2 tables, \d+s elapsed"),
        (
            ["backup_db", "--output", backup],
            r"backup_db: checking, (\d+)/\1 tables, [\d,]+ rows, \d+s elapsed",
        ),
        (
            ["backup_db", "--list", "--dir", str(scratch.directory / "kept")],
            r"backup_db: 1/1 backups checked, \d+s elapsed",
        ),
        (
            ["restore_db", backup, "--yes"],
            r"restore_db: checking, (\d+)/\1 tables, [\d,]+ rows, \d+s elapsed",
        ),
    ]


def test_long_commands_show_progress_on_a_terminal_and_leave_only_their_output(scratch: Scratch):
    for args, expected in _cases(scratch):
        status, screen = _in_terminal(scratch, *args)
        assert status == 0, screen
        lines = PROGRESS.findall(screen)
        assert any(re.fullmatch(f"\\r{expected}\\x1b\\[K", line) for line in lines), (args, lines)
        assert screen.count("\r\x1b[K") >= 1  # the line is cleared before the result
        if args[0] in ("verify_integrity", "scrub_fake_data") or "--list" in args:
            # What is left on the screen is what a pipe gets: the progress line is gone.
            piped = scratch.manage(*args)
            assert piped.returncode == 0
            assert _comparable(PROGRESS.sub("", screen)) == _comparable(piped.stdout + piped.stderr)


def _comparable(text: str) -> str:
    """Without colours and timings, which differ between two runs."""
    return re.sub(r"\d+\.\d+s", "N s", re.sub(r"\x1b\[[0-9;]*m", "", text))


def test_long_commands_are_quiet_when_piped_or_at_verbosity_zero(scratch: Scratch):
    for args, _expected in _cases(scratch):
        if args[0] == "backup_db" and "--output" in args:
            args = [*args, "--overwrite"]
        piped = scratch.manage(*args)
        assert piped.returncode == 0, piped.stderr
        # stderr may hold the log (restore_db's writes through deploy mode), never a progress line.
        for stream in (piped.stdout, piped.stderr):
            assert "\x1b" not in stream and "\r" not in stream, args
        status, screen = _in_terminal(scratch, *args, "--verbosity", "0")
        assert status == 0
        assert PROGRESS.findall(screen) == [], args
        status, screen = _in_terminal(scratch, *args, stdout_piped=True)
        assert status == 0
        assert PROGRESS.findall(screen) == [], args
