"""Who tried to write: the exceptions in a traceback, each with the project code that raised it."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
_EXCEPTION = re.compile(
    r"^(?P<name>[A-Za-z_][\w.]*(?:Error|Exception|Active|Refused|Held)): (?P<message>.*)$"
)
_FRAMEWORK = ("site-packages", f"{os.sep}lib{os.sep}python")
_DEPLOYGUARD = f"{Path(__file__).resolve().parents[1]}{os.sep}"  # this package's own frames


def parse_writers(stderr: str, base_dir: Path) -> list[dict[str, str]]:
    """The exceptions in a traceback-bearing stderr, each with the project frame that raised it:
    {"exception", "message", "where"}, where "where" is file:line in function() of each of the
    project's frames, outermost first, relative to `base_dir`."""
    found: list[dict[str, str]] = []
    frames: list[tuple[str, str, str]] = []
    for line in stderr.splitlines():
        if match := _FRAME.match(line):
            frames.append((match["file"], match["line"], match["func"]))
            continue
        if match := _EXCEPTION.match(line.strip()):
            ours = [f for f in frames if _is_project(f[0])]
            places = []
            for file, number, func in ours:
                with contextlib.suppress(ValueError):
                    file = str(Path(file).resolve().relative_to(base_dir))
                places.append(f"{file}:{number} in {func}()")
            where = " -> ".join(places)
            found.append(
                {"exception": match["name"].rsplit(".", 1)[-1], "message": match["message"], "where": where}
            )
            frames = []
    return found


def _is_project(file: str) -> bool:
    """A frame of the project's own code: not deployguard's, Python's, an installed package's
    or manage.py's (a project that itself lives under a directory named deployguard included)."""
    if any(part in file for part in _FRAMEWORK) or file.endswith("manage.py"):
        return False
    return not str(Path(file).resolve()).startswith(_DEPLOYGUARD)
